from ._context import Context
from ._report import Figure, notMeasured


async def run(context: Context) -> list[Figure]:
    return [notMeasured("service.restore_time", "s", "restore", "todo")]
