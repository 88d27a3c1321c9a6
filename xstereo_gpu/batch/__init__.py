"""Many shots: a run of stereo shots reconstructed one after another with one :class:`Pipeline`.

Modules::

    sources   ShotSource, open_source   the shots of a run (a stack file or many shot files), read lazily
    veto      VetoOptions, window_photons, is_hit   the hit veto before phasing (photons per pattern)
    record    ShotRecord                 what became of one shot (ok / blank / failed), with its Results
    store     RunStore                   the run store: per-chunk HDF5 files, run.h5 and summary.csv
    single    process_shot               one shot: veto, then the pipeline, into its record
    process   process_run                the loop: read, veto, reconstruct, store; resumable
    cluster   iter_distributed           the shots as tasks of a Dask distributed cluster, one writer
    clusters  start_client, cpu_workers  the cluster of ``xstereo batch`` (--workers auto|N|0, --scheduler)
    report    run_report                 the final numbers of a run, read from the store's summary table
    display   BatchProgress, print_report  the progress bar (or plain lines) and the final table

The store's layout is in docs/format.md ("Run store").
"""

from .process import process_run
from .record import ShotRecord
from .sources import ShotSource, open_source
from .store import RunStore
from .veto import VetoOptions, is_hit, window_photons

__all__ = [
    "process_run",
    "ShotRecord",
    "ShotSource",
    "open_source",
    "RunStore",
    "VetoOptions",
    "is_hit",
    "window_photons",
]
