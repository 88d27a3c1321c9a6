"""Many shots: a run of stereo shots reconstructed with one :class:`Pipeline`, hits phased in stacks.

Modules::

    sources   ShotSource, open_source   the shots of a run (a stack file, many shot files or a EuXFEL run
                                        directory read with EXtra-data), read lazily
    veto      VetoOptions, window_photons, is_hit   the hit veto before phasing (photons per pattern)
    record    ShotRecord                 what became of one shot (ok / blank / failed), with its Results
    store     RunStore                   the run store: per-chunk HDF5 files, run.h5 and summary.csv
    launch    run_launch                 several shots' phasing in one stack, then each shot's other stages
    shots     screen_shot, reconstruct_hits   the veto of a shot, then its hits into records
    prefetch  prefetch                   the next shots read on a thread while the current ones compute
    process   process_run                the loop: read, veto, reconstruct, store; resumable
    cluster   iter_distributed           tasks of a few shots on a Dask distributed cluster, one writer
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
