"""``cupy.cuda`` of the stand-in: one device (0), a null stream, no-op synchronisation."""

from ._core import Device  # noqa: F401


def is_available() -> bool:
    return True


class Stream:
    null = None

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream()


def get_current_stream():
    return Stream.null


class runtime:  # noqa: N801
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(i):
        return {"name": b"CUDA emulator (CPU threads)", "totalGlobalMem": 1 << 30, "multiProcessorCount": 1}

    @staticmethod
    def runtimeGetVersion():
        return 0

    @staticmethod
    def deviceSynchronize():
        pass


class cufft:  # noqa: N801 - cupy.cuda.cufft: the direction constants of PlanNd.fft
    CUFFT_FORWARD = -1
    CUFFT_INVERSE = 1
