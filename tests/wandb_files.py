"""Reading W&B's offline run files in tests: the run record (group, tags, display name)."""
import pathlib
import struct
import time

BLOCK = 32768   # LevelDB-log block size
HEADER = 7      # the file's header (":W&B", magic, version); also a chunk's (crc, length, type)


def wandb_run_record(run_dir: pathlib.Path):
    """The run record of the one offline W&B run under ``run_dir``. A ``.wandb`` file is a
    7-byte header, then LevelDB-log blocks of 32 KiB holding protobuf ``Record``s (chunk
    header: crc32, length, type 1 full / 2 first / 3 middle / 4 last). W&B's service process
    may still be writing it when the run has finished: poll for a few seconds."""
    for _ in range(100):
        record = _run_record_in(pathlib.Path(run_dir))
        if record is not None:
            return record
        time.sleep(0.1)
    raise AssertionError(f"no W&B run record under {run_dir}")


def _run_record_in(run_dir: pathlib.Path):
    from wandb.proto import wandb_internal_pb2 as pb

    paths = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    if len(paths) != 1:
        return None
    data, pos, pending = paths[0].read_bytes(), HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:         # a block's tail too short for a header
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + HEADER])
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record.FromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "run":
                return record.run
    return None
