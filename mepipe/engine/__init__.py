"""The build engine: lock, resume, task planning and the local / Dask backends.

``mepipe.build.build_dataset`` is the driver; it uses:

* :mod:`~mepipe.engine.lock`: one build of an ``OUT`` folder at a time (``OUT/build.lock``);
* :mod:`~mepipe.engine.fingerprint`: cheap source fingerprints (what changed since a clip was built);
* :mod:`~mepipe.engine.state`: what an earlier run left, which clips a resumed run keeps;
* :mod:`~mepipe.engine.tasks`: clips cut into tasks, each writing its own shard in a worker;
* :mod:`~mepipe.engine.backends`, :mod:`~mepipe.engine.runner`: where tasks run and how they are
  driven (in-process, local worker processes, Dask).
"""
