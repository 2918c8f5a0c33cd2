"""FITS read rates: uncompressed files against gzip-compressed ones (`.fits.gz`), each against its floor.

Sections (each a function, chosen with --only):
- catalog: an afw catalog (a forced_src-sized table, packed flags) read whole by `afw.read_table` and
  by `afw.RawRecords.open` (the merge's path). Baselines measured in the same process: reading the
  plain file's bytes and nothing else (as benchmarks/object_pipeline.py does), and decompressing the
  gzip file to nothing (zlib: the floor of any gzip reader); astropy's reading of both files too.
  The peak memory of the gzip read (tracemalloc) is printed against the size of the record block:
  the decompressed data is held once.
- calexp: the calibration and date of a calexp (three image HDUs), plain and gzip, in both eras:
  FLUXMAG0 in the primary header (the gzip read stops after it), and an archived PhotoCalib after
  the images (the gzip scan decompresses them once, to skip them), against decompressing the file.

Every figure is printed with its unit, one per line, with `ratio` lines. Timings are warm-cache best
of --repeat runs; `--only catalog --plain-only` runs with no gzip support needed, to compare the
uncompressed rate of two versions of the reader on one machine.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
from object_pipeline import raw_read  # the same raw-read baseline (benchmarks/ is on sys.path)
from visit_products import timed

from dc2tasks.products import afw
from dc2tasks.products.calib import Calibration
from dc2tasks.products.visit_info import read_exposure_info
from dc2tasks.sample import afw_writer, fits_writer
from dc2tasks.sample.exposure import photocalib_archive_hdus


def write_catalog(path: Path, rows: int, fields: int, flags: int, seed: int) -> None:
    """An afw catalog of `rows` rows: id, coordinates, `fields` float64 measurements, `flags` flags."""
    rng = np.random.default_rng(seed)
    columns = {"id": np.arange(rows, dtype=np.int64) + 2**40, "coord_ra": rng.uniform(0, 6.28, rows)}
    for k in range(fields):
        # measurements with noise in their low bits, so they compress as real ones do (about 2:1)
        columns[f"m{k}_instFlux"] = np.round(rng.lognormal(5, 2, rows), 3)
    bits = {f"m{k}_flag": rng.uniform(size=rows) < 0.05 for k in range(flags)}
    path.write_bytes(afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(columns, bits))


def write_calexp(path: Path, side: int, era: str, seed: int) -> None:
    """A calexp's layout: a primary header with the date (and FLUXMAG0 in the old era), image, mask
    and variance HDUs of `side` x `side` noisy pixels, then (PhotoCalib era) the archive."""
    rng = np.random.default_rng(seed)
    calibration = Calibration.from_zero_point(era, 31.0, 0.001)
    primary = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)]
    primary += [("DATE-AVG", "2022-05-01T03:04:05.000000000"), ("TIMESYS", "TAI")]
    tail = b""
    if era == "calib":
        primary += [("FLUXMAG0", calibration.fluxmag0), ("FLUXMAG0ERR", calibration.fluxmag0_err)]
    else:
        tail, archive_id = photocalib_archive_hdus(calibration, first_hdu=4)
        primary += [("AR_HDU", 4), ("PHOTOCALIB_ID", archive_id)]
    parts = [fits_writer.header_bytes(primary)]
    planes = (
        (-32, rng.normal(100, 10, (side, side)).astype(">f4")),
        (32, (rng.uniform(size=(side, side)) < 0.01).astype(">i4")),
        (-32, rng.normal(100, 3, (side, side)).astype(">f4")),
    )
    for bitpix, plane in planes:
        cards = [("XTENSION", "IMAGE"), ("BITPIX", bitpix), ("NAXIS", 2), ("NAXIS1", side), ("NAXIS2", side)]
        cards += [("PCOUNT", 0), ("GCOUNT", 1)]
        parts += [fits_writer.header_bytes(cards), fits_writer.pad_data(plane.tobytes())]
    path.write_bytes(b"".join(parts) + tail)


def gzip_copy(path: Path) -> Path:
    out = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(out, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 16 << 20)
    return out


def gunzip_floor(path: Path) -> None:
    """Decompress to nothing: what any reader of a gzip file pays at least."""
    z = zlib.decompressobj(wbits=31)
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(1 << 20):
            z.decompress(chunk)


def astropy_read(path: Path) -> None:
    from astropy.io import fits as afits

    with afits.open(path, memmap=False) as hdul:
        data = hdul[1].data
        for name in data.names:
            np.asarray(data[name])


def peak_memory(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_catalog(directory: Path, rows: int, fields: int, repeat: int, plain_only: bool, seed: int) -> None:
    plain = directory / "forced.fits"
    write_catalog(plain, rows, fields, flags=64, seed=seed)
    mb = plain.stat().st_size / 1e6
    print(f"catalog: {rows} rows, {fields + 2} fields and 64 flags, {mb:.1f} MB uncompressed")
    raw_s, _ = timed(lambda: raw_read([plain]), repeat)
    table_s, table = timed(lambda: afw.read_table(plain), repeat)
    records_s, _ = timed(lambda: afw.RawRecords.open(plain), repeat)
    print(f"raw read of the file's bytes: {mb / raw_s:.0f} MB/s ({raw_s:.3f} s)")
    print(f"uncompressed, afw.read_table: {mb / table_s:.0f} MB/s ({table_s:.3f} s, {len(table)} rows)")
    print(f"uncompressed, RawRecords.open (merge): {mb / records_s:.0f} MB/s ({records_s:.3f} s)")
    print(f"ratio uncompressed read_table / raw read: {raw_s / table_s:.2f}")
    print(f"ratio uncompressed RawRecords.open / raw read: {raw_s / records_s:.2f}")
    if plain_only:
        return
    packed = gzip_copy(plain)
    gz_mb = packed.stat().st_size / 1e6
    print(f"gzip copy: {gz_mb:.1f} MB ({mb / gz_mb:.2f}:1)")
    floor_s, _ = timed(lambda: gunzip_floor(packed), repeat)
    gz_table_s, gz_table = timed(lambda: afw.read_table(packed), repeat)
    gz_records_s, _ = timed(lambda: afw.RawRecords.open(packed), repeat)
    for name in table.columns:
        assert np.array_equal(gz_table[name], table[name], equal_nan=True), name
    print(f"gzip, decompression alone (zlib): {mb / floor_s:.0f} MB/s ({floor_s:.3f} s)")
    print(f"gzip, afw.read_table: {mb / gz_table_s:.0f} MB/s ({gz_table_s:.3f} s, same values)")
    print(f"gzip, RawRecords.open (merge): {mb / gz_records_s:.0f} MB/s ({gz_records_s:.3f} s)")
    print(f"ratio gzip RawRecords.open / decompression alone: {floor_s / gz_records_s:.2f}")
    print(f"ratio gzip / uncompressed (read_table): {table_s / gz_table_s:.2f}")
    block = afw.RawRecords.open(plain).rows.nbytes
    peak = peak_memory(lambda: afw.RawRecords.open(packed))
    print(f"gzip read peak memory: {peak / 1e6:.1f} MB for a {block / 1e6:.1f} MB record block")
    print(f"ratio peak memory / record block: {peak / block:.2f}   (goal < 2: the data held once)")
    astro_s, _ = timed(lambda: astropy_read(plain), repeat)
    astro_gz_s, _ = timed(lambda: astropy_read(packed), repeat)
    print(f"astropy, uncompressed: {mb / astro_s:.0f} MB/s; gzip: {mb / astro_gz_s:.0f} MB/s")
    print(f"ratio astropy / ours: uncompressed {astro_s / table_s:.2f}, gzip {astro_gz_s / gz_table_s:.2f}")


def bench_calexp(directory: Path, side: int, repeat: int, seed: int) -> None:
    for era in ("calib", "photocalib"):
        plain = directory / f"calexp-{era}.fits"
        write_calexp(plain, side, era, seed)
        packed = gzip_copy(plain)
        mb = plain.stat().st_size / 1e6
        print(
            f"calexp ({era} era): 3 planes of {side} x {side} px, {mb:.1f} MB, "
            f"gzip {packed.stat().st_size / 1e6:.1f} MB"
        )
        plain_s, info = timed(lambda p=plain: read_exposure_info(p), repeat)
        gz_s, gz_info = timed(lambda p=packed: read_exposure_info(p), repeat)
        floor_s, _ = timed(lambda p=packed: gunzip_floor(p), repeat)
        same = replace(gz_info.calibration, source="") == replace(info.calibration, source="")
        assert same and gz_info.mjd == info.mjd, (gz_info, info)
        print(f"uncompressed, calibration and date: {plain_s * 1e3:.2f} ms")
        print(f"gzip, calibration and date: {gz_s * 1e3:.2f} ms")
        print(f"gzip, decompression of the whole file alone (zlib): {floor_s * 1e3:.1f} ms")
        print(f"ratio gzip calexp read / whole-file decompression: {gz_s / floor_s:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("catalog", "calexp"), action="append", help="run only these sections")
    p.add_argument("--rows", type=int, default=200_000, help="catalog rows")
    p.add_argument("--fields", type=int, default=100, help="catalog float64 fields")
    p.add_argument("--side", type=int, default=2048, help="calexp side in pixels")
    p.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    p.add_argument("--plain-only", action="store_true", help="only the uncompressed catalog figures")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, help="parent of the temporary directory (default: system temp)")
    args = p.parse_args()
    sections = args.only or ["catalog", "calexp"]
    directory = Path(tempfile.mkdtemp(prefix="dc2-bench-fits-", dir=args.workdir))
    try:
        if "catalog" in sections:
            bench_catalog(directory, args.rows, args.fields, args.repeat, args.plain_only, args.seed)
        if "calexp" in sections and not args.plain_only:
            bench_calexp(directory, args.side, args.repeat, args.seed)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
