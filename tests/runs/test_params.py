"""Trigger params: defaults, subsets, and hostile values refused by our validator and by Airflow's Param."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import Param
from airflow.sdk.exceptions import ParamValidationError

from dc2tasks.runs import ParamsError, load_run_config, params_json_schema, params_schema, validate_params

RUNS = Path(__file__).resolve().parents[2] / "dags" / "runs"


@pytest.fixture(scope="module")
def run12p():
    return load_run_config(RUNS / "run1.2p_v4.yaml")


def test_defaults_are_everything_of_the_run(run12p):
    p = validate_params({}, run12p)
    assert p.products == (
        "object",
        "trim_object",
        "dpdd_object",
        "merged_dpdd_object",
        "source",
        "forced_source",
    )
    assert p.tracts == () and p.visits == ()
    assert p.rerun == "coadd-v4"
    assert p.dry_run is False and p.force is False
    assert p.qa == "enforce"  # the run file has no qa key: the gate enforces


def test_the_qa_param_defaults_to_the_run_files_mode(run12p):
    warned = run12p.model_copy(update={"qa": run12p.qa.model_copy(update={"mode": "warn"})})
    assert params_schema(warned)["qa"]["default"] == "warn"
    assert validate_params({}, warned).qa == "warn"
    assert validate_params({"qa": "approve"}, warned).qa == "approve"
    with pytest.raises(ParamsError, match="qa: 'ignore' is refused; the QA gate is one of enforce, w"):
        validate_params({"qa": "ignore"}, run12p)


def test_a_subset_in_the_run_order(run12p):
    p = validate_params(
        {"products": ["dpdd_object", "object"], "tracts": [4851, 4850], "visits": [230, 5],
         "dry_run": True, "force": True, "rerun": "coadd-v5"},
    run12p)  # fmt: skip
    assert p.products == ("object", "dpdd_object")
    assert p.tracts == (4850, 4851)
    assert p.visits == (5, 230)
    assert (p.rerun, p.dry_run, p.force) == ("coadd-v5", True, True)


def test_every_param_has_a_description_and_a_default(run12p):
    schema = params_schema(run12p)
    assert sorted(schema) == ["dry_run", "force", "products", "qa", "rerun", "tracts", "visits"]
    for name, s in schema.items():
        assert len(s["description"]) > 20, name
        assert "default" in s, name
    assert schema["products"]["items"]["enum"] == run12p.products
    assert schema["tracts"]["items"]["enum"] == run12p.tracts


HOSTILE = [
    ({"qa": "warn; rm -rf ~"}, "qa: 'warn; rm -rf ~' is refused; the QA gate is one of enforce, warn"),
    ({"tracts": ["../../etc/passwd"]}, "tracts[0]: '../../etc/passwd' is refused; a tract is an integer"),
    ({"tracts": [4850, "4851; rm -rf ~"]}, "tracts[1]: '4851; rm -rf ~' is refused"),
    ({"tracts": ["$(reboot)"]}, "tracts[0]: '$(reboot)' is refused"),
    ({"tracts": [9999]}, "tracts[0]: 9999 is refused; a tract is an integer, one of the run's: 5066, 5065"),
    ({"tracts": [4850.5]}, "tracts[0]: 4850.5 is refused"),
    ({"tracts": "4850"}, "tracts: '4850' is refused"),
    (
        {"products": ["../object"]},
        "products[0]: '../object' is refused; a product is one of the run's: object,",
    ),
    ({"products": ["object", "object`id`"]}, "products[1]: 'object`id`' is refused"),
    ({"products": ["dia_object"]}, "products[0]: 'dia_object' is refused"),  # a product, but not this run's
    ({"products": []}, "products: choose at least one"),
    ({"visits": [-1]}, "visits[0]: -1 is refused; a visit is a non-negative integer"),
    ({"visits": ["1 && curl evil"]}, "visits[0]: '1 && curl evil' is refused"),
    ({"rerun": "../../home"}, "rerun: '../../home' is refused; a rerun is one directory under"),
    ({"rerun": "coadd-v5\n"}, "rerun: 'coadd-v5\\n' is refused; a rerun is one directory under"),
    ({"rerun": "-rf"}, "rerun: '-rf' is refused"),
    ({"rerun": "a/b"}, "rerun: 'a/b' is refused"),
    ({"rerun": "."}, "rerun: '.' is refused"),
    ({"rerun": ".."}, "rerun: '..' is refused"),
    ({"rerun": "x; rm -rf /"}, "rerun: 'x; rm -rf /' is refused"),
    ({"dry_run": "false"}, "dry_run: 'false' is refused; true or false"),
    (
        {"tract": [4850]},
        "('tract' was unexpected); the params are products, tracts, visits, rerun, dry_run, force",
    ),
]


@pytest.mark.parametrize(("conf", "message"), HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_values_are_refused_with_the_param_named(run12p, conf, message):
    with pytest.raises(ParamsError) as info:
        validate_params(conf, run12p)
    assert message in str(info.value)


PARAM_NAMES = {"products", "tracts", "visits", "rerun", "dry_run", "force", "qa"}


@pytest.mark.parametrize("conf", [c for c, _ in HOSTILE if set(c) <= PARAM_NAMES])
def test_airflow_param_refuses_them_too(run12p, conf):
    """The schemas given to airflow.sdk.Param reject the same values when the UI form is submitted."""
    ((name, value),) = conf.items()
    param = Param(**params_schema(run12p)[name])
    with pytest.raises(ParamValidationError):
        param.resolve(value)


def test_airflow_param_accepts_the_defaults_and_a_subset(run12p):
    schema = params_schema(run12p)
    for name, s in schema.items():
        assert Param(**s).resolve() == s["default"], name
    assert Param(**schema["tracts"]).resolve([4850, 4429]) == [4850, 4429]
    assert Param(**schema["products"]).resolve(["object"]) == ["object"]


def test_the_conf_schema_refuses_unknown_keys(run12p):
    schema = params_json_schema(run12p)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(params_schema(run12p))


def test_the_rerun_pattern_is_fullmatched_by_jsonschema_too():
    """jsonschema searches a `pattern`: `^...$` would accept a trailing newline (Python's `$`); the
    shipped pattern ends with `(?![\\s\\S])`, "end of string" in Python and ECMAScript alike."""
    import jsonschema

    from dc2tasks import names

    good = {"type": "string", "pattern": names.RERUN.json_schema_pattern}
    naive = {"type": "string", "pattern": f"^{names.RERUN.body}$"}
    jsonschema.validate("w_2019_10+fix", good)
    jsonschema.validate("w_2019_10\n", naive)  # the pitfall this guards against
    for value in ("w_2019_10\n", "-rf", "..", "a/b", "", "x\ny"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, good)


def test_the_rerun_is_fullmatched_where_the_params_are_consumed(run12p, monkeypatch):
    """Whatever schema validated the conf before (the UI, the REST API), validate_params checks the
    rerun that becomes a path with fullmatch: shown with the schema's pattern weakened to `^...$`."""
    from dc2tasks import names
    from dc2tasks.runs import params

    real = params.params_schema

    def weakened(config):
        schema = real(config)
        schema["rerun"]["pattern"] = f"^{names.RERUN.body}$"
        return schema

    monkeypatch.setattr(params, "params_schema", weakened)
    with pytest.raises(ParamsError, match=r"^rerun: 'coadd-v5\\n' is refused; a rerun is one directory"):
        validate_params({"rerun": "coadd-v5\n"}, run12p)
    assert validate_params({"rerun": "coadd-v5"}, run12p).rerun == "coadd-v5"
