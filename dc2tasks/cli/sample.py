"""`dc2 sample-repo`: write a sample Gen2 repository from the command line.

`run(args)` does the work, so the command can also be wired into another parser.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dc2tasks.cli.args import add_command, argparse_type, bands, nonneg_int, patch
from dc2tasks.sample.config import (
    ALL_DETECTORS,
    NUM_DETECTORS,
    SampleConfig,
    parse_missing_band,
    patch_grid,
)
from dc2tasks.sample.fields import north_pole_tract, ra_zero_tract

DESCRIPTION = """\
Write a deterministic sample Gen2 butler repository: the test bed for the product steps.

Layout (obs_lsst templates; obs_lsstSim with --camera):
  PATH/_mapper                          the mapper class (root repository)
  PATH/rerun/coadd/                     deepCoadd_calexp per tract, patch, band (with calibration)
  PATH/rerun/RERUN/                     deepCoadd_ref per patch, deepCoadd_forced_src per patch and band;
                                        its repositoryCfg.yaml names rerun/coadd as parent
  PATH/truth/object_truth_tract_T.parquet  what was put in: nJy fluxes, F0, PSF moments per band

Catalogs are real afw FITS tables (packed flags, TFLAG names, slot ALIAS cards), as wide as real
DC2 tables by default. Positions follow the LSST rings sky map (120 rings, TAN tracts, 4000-pixel
patches with 100-pixel borders); objects in patch overlaps are in both patches with the same id and
are primary in one. The same options always give byte-identical files.

Visits (--visits N per tract; none by default):
  PATH/rerun/coadd/calexp/VVVVVVVV-B/RNN/calexp_...-detDDD.fits    calexp: calibration + visit info
  PATH/rerun/coadd/src/...                                       src per detector
  PATH/rerun/RERUN/forced/...                                    forced_src (objectId = the Object's id)
  PATH/rerun/RERUN/deepDiff/vVVVVVVVV-fB/RNN/diffexp_, diaSrc_   difference image + DIA sources
  PATH/rerun/RERUN/deepDiff/diaObject/T/X,Y/diaObject-T-X,Y.fits DIA objects per patch
  PATH/truth/{source,forced,dia_source}_truth_visit_V.parquet, dia_object_truth_tract_T.parquet
Visit V = 100000 + 1000*T + k; bands cycle through --bands; each visit points at the centre of the
generated patches (the tract centre for a whole tract) with a dither of up to 3' and a rotation of
its own. Detectors are obs_lsst numbers (R22 S11 = 94; 189 in all) on an LSSTCam-like focal plane;
each has its own zero point, and its difference image another. Sources are the truth objects on
the detector (positions scattered by ~0.02") plus --spurious-fraction unmatched ones.

"""


def _sky_help() -> str:
    north, south, equator = north_pole_tract(), ra_zero_tract(-30.0), ra_zero_tract(0.0)
    return f"""
Awkward skies: tract 0 is the south polar cap (centred on the pole; the north cap is tract
{north}), and the first tract of every ring is centred at RA 0, e.g. {south} near Dec -30 and {equator}
at the equator (dc2tasks.sample.fields.ra_zero_tract(dec)). At 0.2"/px such a tract has 7x7
patches; generate its middle (--patches 3,3, or --patch-grid 7) for sources on both sides of RA 0,
or around the pole in tract 0.
"""


EXAMPLES = """\
examples:
  dc2 sample-repo /tmp/sample
  dc2 sample-repo /tmp/sample --patch-grid 3 --objects-per-patch 5000 --schema v1 --calib-era calib
  dc2 sample-repo /tmp/sample --tracts 4850 --patches 0,0 0,1 --missing-band g@0,1 --missing-patch 1,1
  dc2 sample-repo /tmp/sample --calib-era photocalib --zp-jitter 0.1 --overwrite
  dc2 sample-repo /tmp/sample --visits 4 --detectors 90-98 --visit-list /tmp/sample-visits.txt
  dc2 sample-repo /tmp/sample --tracts 0 4606 --patches 3,3 --visits 2 --detectors all --detector-pixels 1000
"""


def _grid(text: str) -> tuple[str, ...]:
    """`N` or `NxM`, each 1..10: patch indices are single digits (names.PATCH)."""
    sides = text.lower().split("x")
    if len(sides) > 2 or not all(v.isdigit() and 1 <= int(v) <= 10 for v in sides):
        raise ValueError(f"a patch grid is N or NxM with N and M in 1..10 (e.g. 3 or 2x4), not {text!r}")
    return patch_grid(*map(int, sides))


def parse_detectors(text: str) -> tuple[int, ...]:
    """`all`, or numbers and ranges separated by commas: `94,95,97,98`, `90-98`."""
    if text.strip().lower() == "all":
        return ALL_DETECTORS
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(
                f"detectors are 'all' or numbers and ranges such as 94,95 or 90-98, not {text!r}"
            )
        first, last = int(lo), int(hi) if dash else int(lo)
        if not 0 <= first <= last < NUM_DETECTORS:
            raise ValueError(f"detector numbers run 0..{NUM_DETECTORS - 1}; {part!r} is not a valid range")
        out.extend(range(first, last + 1))
    return tuple(out)


def parse_pixels(text: str) -> tuple[int, int]:
    """`WxH` (e.g. 4000x4072), or one number for a square detector."""
    w, _, h = text.lower().partition("x")
    if not w.isdigit() or (h and not h.isdigit()):
        raise ValueError(f"detector pixels are WxH (e.g. 4000x4072 or 2000x2000), not {text!r}")
    return int(w), int(h or w)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a fraction is a number between 0 and 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction is a number between 0 and 1, not {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    d = SampleConfig()
    p = add_command(
        sub,
        "sample-repo",
        help="write a deterministic sample Gen2 repository (coadd catalogs, exposures, truth)",
        description=DESCRIPTION + _sky_help(),
        epilog=EXAMPLES,
    )
    p.add_argument("path", metavar="PATH", help="directory to create (must be empty unless --overwrite)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed; same seed and options, same bytes")
    p.add_argument(
        "--tracts", type=nonneg_int, nargs="+", default=list(d.tracts), help="tract ids (rings sky map)"
    )
    _add_layout_options(p, d)
    _add_format_options(p, d)
    _add_missing_options(p, d)
    p.add_argument("--rerun", default=d.rerun, help="name of the rerun holding ref and forced_src")
    _add_visit_options(p, d)
    p.add_argument("--no-truth", action="store_true", help="do not write the truth tables")
    p.add_argument("--overwrite", action="store_true", help="write into PATH even if it is not empty")
    p.set_defaults(func=run)


def _add_layout_options(p: argparse.ArgumentParser, d: SampleConfig) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--patches",
        type=patch,
        nargs="+",
        default=list(d.patches),
        metavar="X,Y",
        help="patches to write in every tract",
    )
    where.add_argument(
        "--patch-grid",
        type=argparse_type(_grid),
        metavar="N[xM]",
        help="instead of --patches: patches 0,0 .. N-1,M-1",
    )
    p.add_argument(
        "--objects-per-patch",
        type=int,
        default=d.objects_per_patch,
        help="records whose position falls in a patch's inner region (overlap copies come on top)",
    )
    p.add_argument("--bands", type=bands, default="".join(d.bands), help="band letters")


def _add_format_options(p: argparse.ArgumentParser, d: SampleConfig) -> None:
    """How the files look: field names, camera templates, calibration, pixel scale, table widths."""
    p.add_argument(
        "--schema",
        default=f"v{d.schema}",
        choices=["v1", "v2", "v3", "v4"],
        help="field-name generation: v1 _flux/_fluxSigma (xSigma); v2 _flux/_fluxErr; "
        "v3 _instFlux/_instFluxErr with base_Blendedness_abs_instFlux; v4 like v3 with base_Blendedness_abs",
    )
    p.add_argument(
        "--camera",
        choices=["obs_lsst", "obs_lsstSim"],
        default=d.camera,
        help="file templates and mapper: obs_lsst (forced_src-...) or obs_lsstSim (forced-...)",
    )
    p.add_argument(
        "--calib-era",
        choices=["calib", "photocalib"],
        default=d.calib_era,
        help="how coadd exposures carry their calibration: FLUXMAG0 header keywords (2018 Calib) "
        "or a persisted PhotoCalib in archive HDUs (2019+)",
    )
    p.add_argument("--zero-point", type=float, default=d.zero_point, help="coadd zero point, AB mag")
    p.add_argument(
        "--zp-jitter",
        type=float,
        default=d.zp_jitter,
        help="move each patch-band's zero point by a fixed pseudo-random amount within +-this (mag), "
        "so readers that assume ZP 27 disagree with the truth",
    )
    p.add_argument(
        "--pixel-scale", type=float, default=d.pixel_scale, help="coadd arcsec/pixel (Run 1.x: 0.185)"
    )
    p.add_argument(
        "--ref-width",
        type=int,
        default=d.ref_width,
        help="deepCoadd_ref columns counting each flag bit (real DC2: ~740)",
    )
    p.add_argument(
        "--forced-width",
        type=int,
        default=d.forced_width,
        help="deepCoadd_forced_src columns counting each flag bit (real DC2: ~280)",
    )


def _add_missing_options(p: argparse.ArgumentParser, d: SampleConfig) -> None:
    p.add_argument(
        "--missing-band",
        type=argparse_type(parse_missing_band),
        nargs="+",
        action="extend",
        default=[],
        metavar="B[@X,Y]",
        help="do not write this band's forced_src and calexp, in one patch (g@0,1) or in every patch (g)",
    )
    p.add_argument(
        "--missing-patch",
        type=patch,
        nargs="+",
        action="extend",
        default=[],
        metavar="X,Y",
        help="write no deepCoadd_ref (so no forced_src) for this patch; its calexps still exist",
    )


def _add_visit_options(p: argparse.ArgumentParser, d: SampleConfig) -> None:
    v = p.add_argument_group("visits")
    v.add_argument(
        "--visits", type=int, default=d.visits, help="visits per tract (calexp, src, forced_src, DIA)"
    )
    v.add_argument(
        "--detectors",
        type=argparse_type(parse_detectors),
        default=",".join(map(str, d.detectors)),
        metavar="LIST|all",
        help="obs_lsst detector numbers written per visit, e.g. 94,95,97,98 (R22 S11 S12 S21 S22), "
        "90-98 (raft R22) or all (189)",
    )
    v.add_argument(
        "--detector-pixels",
        type=argparse_type(parse_pixels),
        default="x".join(map(str, d.detector_pixels)),
        metavar="WxH",
        help="detector size in pixels (LSSTCam 4000x4072); smaller lets a whole focal plane fit in a tract",
    )
    v.add_argument(
        "--spurious-fraction",
        type=argparse_type(_fraction),
        default=d.spurious_fraction,
        help='unmatched sources per real source, placed >= 2" from any object (src and diaSrc)',
    )
    v.add_argument(
        "--variable-fraction",
        type=argparse_type(_fraction),
        default=d.variable_fraction,
        help="share of the (isolated, unblended) objects that vary and give DIA sources",
    )
    v.add_argument("--no-dia", action="store_true", help="write no difference images, diaSrc or diaObject")
    v.add_argument("--src-width", type=int, default=d.src_width, help="src columns (real DC2: ~200)")
    v.add_argument("--forced-src-width", type=int, default=d.forced_src_width, help="forced_src columns")
    v.add_argument("--dia-src-width", type=int, default=d.dia_src_width, help="deepDiff_diaSrc columns")
    v.add_argument(
        "--visit-list", metavar="FILE", help="also write the visit numbers to FILE, one a line (a visit list)"
    )


def config_from_args(args: argparse.Namespace) -> SampleConfig:
    return SampleConfig(
        seed=args.seed,
        tracts=tuple(args.tracts),
        patches=tuple(args.patch_grid or args.patches),
        objects_per_patch=args.objects_per_patch,
        bands=tuple(args.bands),
        ref_width=args.ref_width,
        forced_width=args.forced_width,
        schema=int(args.schema.lstrip("v")),
        camera=args.camera,
        calib_era=args.calib_era,
        zero_point=args.zero_point,
        zp_jitter=args.zp_jitter,
        pixel_scale=args.pixel_scale,
        rerun=args.rerun,
        missing_bands=tuple(args.missing_band),
        missing_patches=tuple(args.missing_patch),
        truth=not args.no_truth,
        visits=args.visits,
        detectors=tuple(args.detectors),
        detector_pixels=tuple(args.detector_pixels),
        spurious_fraction=args.spurious_fraction,
        variable_fraction=args.variable_fraction,
        dia=None if not args.no_dia else False,
        src_width=args.src_width,
        forced_src_width=args.forced_src_width,
        dia_src_width=args.dia_src_width,
    )


def run(args: argparse.Namespace) -> int:
    # the generator's imports (scipy) only for this command, not for every `dc2` start
    from dc2tasks.sample.generate import NotEmptyError, make_sample_repo

    try:
        config = config_from_args(args)
        start = time.perf_counter()
        repo = make_sample_repo(args.path, config, overwrite=args.overwrite)
        if args.visit_list:
            repo.write_visit_list(args.visit_list)
    except NotEmptyError as exc:
        print(f"dc2 sample-repo: error: {exc}; pass --overwrite to write into it anyway", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"dc2 sample-repo: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    mb = repo.bytes_written / 1e6
    patches = sorted({p for ps in repo.patches.values() for p in ps})
    print(f"Sample repository: {repo.root.resolve()}")
    print(f"  rerun: {repo.rerun_path.resolve()} (parent {repo.coadd_rerun_path.resolve()})")
    for tract, path in repo.truth.items():
        print(f"  truth, tract {tract}: {path.resolve()}")
    tracts = ", ".join(map(str, repo.tracts))
    side = repo.num_patches[repo.tracts[0]]
    print(
        f"{len(repo.tracts)} tract(s) {tracts}; {len(patches)} patch(es) with a ref "
        f"({' '.join(patches)}) of {side}x{side} per tract; bands {''.join(repo.bands)}; "
        f"schema {repo.schema.name}, {repo.camera}, {repo.calib_era} "
        f'calibration, {repo.pixel_scale}"/px; {repo.rows} ref rows; {repo.files} files, {mb:.1f} MB '
        f"in {seconds:.1f} s ({mb / max(seconds, 1e-9):.0f} MB/s)."
    )
    if repo.visits:
        ids = repo.visit_ids()
        rows = ", ".join(f"{n} {k} rows" for k, n in repo.visit_rows.items())
        w, h = config.detector_pixels
        dia = ", with DIA" if config.dia else ""
        print(
            f"{len(ids)} visit(s) {ids[0]}..{ids[-1]} of {len(config.detectors)} detector(s) "
            f"({w}x{h} px){dia}: {rows}."
        )
        if args.visit_list:
            print(f"  visit list: {Path(args.visit_list).resolve()}")
    return 0
