"""``weft demo``: load, train and serve a small image classifier, end to end, offline.

1. **Data** (:mod:`weft.demo._dataset`): draws a labelled dataset (circle / square /
   triangle on noise, 32x32 PNG files) and streams it through a ``weft.data`` pipeline
   (decode + augment map, batch, prefetch).
2. **Train** (:mod:`weft.demo._model`): a NumPy MLP, each step ``timed``; a checkpoint
   per epoch and every few steps with the pipeline's position (background saves), and
   every metric in the ``Tracker``. Run it again and it resumes from its last
   checkpoint, mid-epoch at the next batch (``--epochs`` more than before continues).
3. **Serve**: the trained model behind the weft V2 server on a background thread,
   queried by concurrent ``weft.serve.Client`` requests that the server batches.

:mod:`weft.demo._run` runs the three phases; :mod:`weft.demo._report` prints what ran,
on which backend and why (from the components' ``statistics()``), its throughput and
the accuracy; :mod:`weft.demo._cli` adds the ``weft demo`` command.

Nothing is imported here: ``weft --help`` imports :mod:`weft.demo._cli` to register the
command, and must not load NumPy or Pillow. Programs import from the modules
(``from weft.demo._run import run_demo``; ``weft.demo._model:DemoModel`` for ``weft serve``).
"""
