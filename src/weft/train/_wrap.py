"""One wrapper factory for the decorators: each writes its logic once, as a *plan*.

A decorator must return a wrapper of the same kind as the function it wraps (plain,
async, generator or async generator), so that ``inspect``, ``await`` and iteration
keep working. Instead of writing four wrappers, a decorator writes two plans:

- ``call(args, kwargs)`` for plain and async functions;
- ``iterate(args, kwargs)`` for generator and async generator functions.

A plan is a generator that *yields instructions* and receives their outcome: the value
is sent back, an exception is thrown in at the ``yield`` (so ``try``/``except`` around a
``yield`` reads like code around the call). Its ``return`` value is the wrapper's result.
:func:`make_wrapper` carries the instructions out, synchronously or with ``await``::

    def call(args, kwargs):                # what @timed does around one call
        start = clock()
        try:
            return (yield CALL)
        finally:
            record(clock() - start)

Instructions for ``call``: :data:`CALL` (run the function once), :class:`Sleep`,
:class:`Wait`. For ``iterate``: :data:`START` (create the iterator, closing any earlier
one), :data:`NEXT` (one item, or :class:`Finished` at its end), :class:`Emit` (hand an
item to the consumer, receive what it sends), :data:`REST` (let the consumer take the
remaining items directly), :data:`COLLECT` (every remaining item, as a tuple), and
:class:`Sleep` and :class:`Wait`. The wrapper closes the iterator when it finishes.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CALL",
    "COLLECT",
    "NEXT",
    "REST",
    "START",
    "Emit",
    "Finished",
    "Kind",
    "Plan",
    "Sleep",
    "Wait",
    "kind_of",
    "make_wrapper",
    "qualified_name",
]

Kind = Literal["sync", "async", "generator", "async_generator"]

#: A plan: called with the wrapper's (args, kwargs), yields instructions, returns the result.
Plan = Callable[[tuple[Any, ...], dict[str, Any]], Generator[Any, Any, Any]]


class _Instruction:
    """An instruction without arguments; compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


CALL = _Instruction("CALL")
START = _Instruction("START")
NEXT = _Instruction("NEXT")
REST = _Instruction("REST")
COLLECT = _Instruction("COLLECT")


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``: with ``sleep`` if given (awaited in async code when it returns an
    awaitable), else ``time.sleep`` or ``asyncio.sleep``."""

    seconds: float
    sleep: Callable[[float], object] | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for a result another thread is computing; its value or exception comes back."""

    future: Future[Any]


@dataclass(frozen=True, slots=True)
class Emit:
    """Give ``item`` to the consumer of a generator wrapper."""

    item: Any


@dataclass(frozen=True, slots=True)
class Finished:
    """What :data:`NEXT` sends back when the iterator is exhausted (``value``: a sync
    generator's return value)."""

    value: Any = None


def kind_of(fn: Callable[..., Any]) -> Kind:
    """Classify ``fn``; looks through ``functools.partial`` and bound methods."""
    target = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(target):
        return "async_generator"
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "generator"
    return "sync"


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.Qualname`` of a function, for statistics and log lines."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


def make_wrapper(fn: Callable[..., Any], *, call: Plan, iterate: Plan,
                 attributes: Mapping[str, object] | None = None) -> Any:
    """A wrapper of ``fn``'s kind that runs ``call`` (functions) or ``iterate``
    (generators) on every invocation; ``attributes`` are set on it (``statistics``...)."""
    kind = kind_of(fn)
    if kind == "async":
        wrapper: Any = _async_function(fn, call)
    elif kind == "generator":
        wrapper = _generator(fn, iterate)
    elif kind == "async_generator":
        wrapper = _async_generator(fn, iterate)
    else:
        wrapper = _function(fn, call)
    functools.update_wrapper(wrapper, fn)
    for name, value in (attributes or {}).items():
        setattr(wrapper, name, value)
    return wrapper


class _Leaked(BaseException):
    """Carries a ``StopIteration`` a plan re-raised out of the driver (see :func:`_throw`)."""

    def __init__(self, error: StopIteration) -> None:
        super().__init__()
        self.error = error


def _throw(steps: Generator[Any, Any, Any], error: BaseException) -> Any:
    """Throw ``error`` into the plan at its ``yield``; return its next instruction.

    Python turns a ``StopIteration`` that leaves a generator into ``RuntimeError``
    (PEP 479). A plain function may raise ``StopIteration`` on purpose (a ``next()``
    helper), so when the plan re-raises the one it was given, the original comes out.
    """
    try:
        return steps.throw(error)
    except RuntimeError as exc:
        if isinstance(error, StopIteration) and exc.__cause__ is error:
            raise _Leaked(error) from None
        raise


def _misplaced(instruction: object, kind: str) -> BaseException:
    # a plan written wrongly is a bug in weft, not something a user can cause
    return AssertionError(f"weft.train: instruction {instruction!r} is not valid in a {kind} plan")


def _sleep(instruction: Sleep) -> None:
    (instruction.sleep or time.sleep)(instruction.seconds)


async def _async_sleep(instruction: Sleep) -> None:
    if instruction.sleep is None:
        import asyncio  # here, not at the top: `import weft.train` stays light

        await asyncio.sleep(instruction.seconds)
        return
    result = instruction.sleep(instruction.seconds)
    if inspect.isawaitable(result):
        await result


async def _async_wait(future: Future[Any]) -> Any:
    import asyncio

    return await asyncio.wrap_future(future)


# The four drivers share one shape: send the outcome of each instruction into the plan
# (a value with send(), an exception with _throw()) until the plan returns, which ends
# in StopIteration. Exceptions of the wrapped callable are thrown in while they are
# being handled, so an exception the plan raises instead keeps them as its context.

def _function(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    def function_wrapper(*args: Any, **kwargs: Any) -> Any:
        steps = plan(args, kwargs)
        try:
            instruction = steps.send(None)
            while True:
                try:
                    if instruction is CALL:
                        reply = fn(*args, **kwargs)
                    elif type(instruction) is Sleep:
                        _sleep(instruction)
                        reply = None
                    elif type(instruction) is Wait:
                        reply = instruction.future.result()
                    else:
                        raise _misplaced(instruction, "function")
                except BaseException as exc:  # every outcome goes to the plan, which decides
                    instruction = _throw(steps, exc)
                else:
                    instruction = steps.send(reply)
        except StopIteration as stop:
            return stop.value
        except _Leaked as leaked:
            error = leaked.error
        raise error  # outside the handler: no "during handling of _Leaked" context
    return function_wrapper


def _async_function(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    async def async_function_wrapper(*args: Any, **kwargs: Any) -> Any:
        steps = plan(args, kwargs)
        try:
            instruction = steps.send(None)
            while True:
                try:
                    if instruction is CALL:
                        reply = await fn(*args, **kwargs)
                    elif type(instruction) is Sleep:
                        await _async_sleep(instruction)
                        reply = None
                    elif type(instruction) is Wait:
                        reply = await _async_wait(instruction.future)
                    else:
                        raise _misplaced(instruction, "async function")
                except BaseException as exc:
                    instruction = _throw(steps, exc)
                else:
                    instruction = steps.send(reply)
        except StopIteration as stop:
            return stop.value
        except _Leaked as leaked:
            error = leaked.error
        raise error  # (a coroutine turns it into RuntimeError, as the function itself would)
    return async_function_wrapper


def _generator(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    def generator_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        steps = plan(args, kwargs)
        inner: Generator[Any, Any, Any] | None = None
        try:
            instruction = steps.send(None)
            while True:
                try:
                    if instruction is NEXT:
                        assert inner is not None, "NEXT before START"
                        try:
                            reply = next(inner)
                        except StopIteration as stop:
                            reply = Finished(stop.value)
                    elif type(instruction) is Emit:
                        reply = yield instruction.item
                    elif instruction is START:
                        if inner is not None:
                            inner.close()
                        inner = fn(*args, **kwargs)
                        reply = None
                    elif instruction is REST:
                        assert inner is not None, "REST before START"
                        reply = yield from inner
                    elif instruction is COLLECT:
                        assert inner is not None, "COLLECT before START"
                        reply = tuple(inner)
                    elif type(instruction) is Sleep:
                        _sleep(instruction)
                        reply = None
                    elif type(instruction) is Wait:
                        reply = instruction.future.result()
                    else:
                        raise _misplaced(instruction, "generator")
                except BaseException as exc:  # GeneratorExit from the consumer included
                    instruction = _throw(steps, exc)
                else:
                    instruction = steps.send(reply)
        except StopIteration as stop:
            return stop.value
        except _Leaked as leaked:
            error = leaked.error
        finally:
            if inner is not None:
                inner.close()
        raise error
    return generator_wrapper


def _async_generator(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    async def async_generator_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        steps = plan(args, kwargs)
        inner: Any = None
        try:
            instruction = steps.send(None)
            while True:
                try:
                    if instruction is NEXT:
                        try:
                            reply = await inner.__anext__()
                        except StopAsyncIteration:
                            reply = Finished()
                    elif type(instruction) is Emit:
                        reply = yield instruction.item
                    elif instruction is START:
                        if inner is not None:
                            await inner.aclose()
                        inner = fn(*args, **kwargs)
                        reply = None
                    elif instruction is REST:
                        async for item in inner:
                            yield item
                        reply = None
                    elif instruction is COLLECT:
                        reply = tuple([item async for item in inner])
                    elif type(instruction) is Sleep:
                        await _async_sleep(instruction)
                        reply = None
                    elif type(instruction) is Wait:
                        reply = await _async_wait(instruction.future)
                    else:
                        raise _misplaced(instruction, "async generator")
                except BaseException as exc:
                    instruction = _throw(steps, exc)
                else:
                    instruction = steps.send(reply)
        except StopIteration:
            return
        except _Leaked as leaked:
            error = leaked.error
        finally:
            if inner is not None:
                await inner.aclose()
        raise error
    return async_generator_wrapper
