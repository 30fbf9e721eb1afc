"""Every config option composes against its schema; typos fail at composition or before Hydra starts."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ssd.config import SCHEMAS, DecoderConfig, RunConfig, register
from ssd.errors import SSDError
from ssd.run import CONF_DIR, check_choices, options

REPO = Path(__file__).resolve().parent.parent
SCHEMA_GROUPS = ("model", "decoder", "benchmark")
OPTIONS = [(group, name) for group in SCHEMA_GROUPS for name in options(group)]
EXPERIMENTS = options("experiment")


def compose_run(overrides: list[str], conf_dir: Path = CONF_DIR, hydra: bool = False):
    register()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def test_every_group_has_options() -> None:
    for group in (*SCHEMA_GROUPS, "experiment"):
        assert options(group), f"conf/{group}/ has no options"
    assert "stepwise" in options("decoder") and "gsm8k" in options("benchmark")


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_option_composes_against_its_schema(group: str, name: str) -> None:
    cfg = compose_run([f"{group}={name}"])
    node = cfg[group]
    schema = OmegaConf.get_type(node)
    # The option file must start from a schema, or typos in it would pass silently.
    assert schema in set(SCHEMAS[group].values()), f"conf/{group}/{name}.yaml does not extend a schema"
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved[group]["name"]
    assert isinstance(OmegaConf.to_object(node), schema)
    assert OmegaConf.get_type(cfg) is RunConfig


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name: str) -> None:
    OmegaConf.to_container(compose_run([f"+experiment={name}"]), resolve=True, throw_on_missing=True)
    cfg = compose_run([f"+experiment={name}"], hydra=True)
    assert cfg.sweep != "adhoc", "an experiment should label its sweep"
    for key, values in (cfg.hydra.sweeper.params or {}).items():
        for value in str(values).split(","):  # each swept value must compose too
            compose_run([f"+experiment={name}", f"{key}={value.strip()}"])


def test_default_experiment_is_the_embedded_arith_sweep() -> None:
    cfg = compose_run(["+experiment=default"], hydra=True)
    assert (cfg.model.path, cfg.benchmark.name) == ("ssd/assets/arith-llada", "arith")
    assert (cfg.limit, cfg.decoder.gen_length, cfg.decoder.block_length) == (100, 24, 8)
    assert (cfg.decoder.cache, cfg.sweep) == ("dual", "default")
    arms = str(cfg.hydra.sweeper.params["+experiment/arith"]).split(",")
    assert {"stepwise", "ssd_n4", "fast_dllm_t03", "psd", "diffuspec"} <= set(arms)


def test_default_sweep_second_workload_is_tally_at_block_32() -> None:
    """`make sweep` runs default_tally beside default, under the same label: tally's Dream in its frame."""
    cfg = compose_run(["+experiment=default_tally"], hydra=True)
    assert (cfg.model.name, cfg.model.path) == ("dream", "ssd/assets/tally-dream")
    assert cfg.benchmark.name == "tally"
    assert (cfg.decoder.gen_length, cfg.decoder.block_length, cfg.decoder.cache) == (96, 32, "dual")
    assert cfg.sweep == compose_run(["+experiment=default"]).sweep
    arms = str(cfg.hydra.sweeper.params["+experiment/arith"]).split(",")
    assert {"stepwise", "fast_dllm_t09", "ssd_fast_dllm_t09"} <= set(arms)
    make = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert "default default_tally" in make


def test_hydra_output_stays_small() -> None:
    cfg = compose_run([], hydra=True)
    assert cfg.hydra.output_subdir is None
    assert str(cfg.hydra.run.dir).startswith("outputs/") and str(cfg.hydra.sweep.dir).startswith("outputs/")
    assert cfg.hydra.job_logging.get("handlers") is None  # no log file next to every job


@pytest.mark.parametrize(
    "override",
    ["decoder.gen_lenght=64", "decoder.gen_length=many", "decoder.cache=full", "limit=some", "modle.path=x"],
)
def test_misspelt_key_or_wrong_type_fails_at_composition(override: str) -> None:
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_run([override])


def test_misspelt_key_in_an_option_file_fails(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "decoder" / "typo.yaml").write_text(
        "defaults:\n  - _schema_stepwise\n  - _self_\n\ngen_lenght: 64\n"
    )
    (conf / "model" / "badtype.yaml").write_text(
        "defaults:\n  - _schema\n  - _self_\n\nname: llada\npath: [1]\n"
    )
    assert compose_run(["decoder=stepwise", "benchmark=gsm8k"], conf_dir=conf).decoder.gen_length == 256
    for override in ("decoder=typo", "model=badtype"):
        with pytest.raises((HydraException, OmegaConfBaseException)):
            compose_run([override], conf_dir=conf)


def test_stepwise_yaml_sets_the_documented_defaults() -> None:
    cfg = compose_run(["decoder=stepwise", "benchmark=gsm8k"])  # gsm8k has no frame of its own
    fields = {f.name for f in dataclasses.fields(DecoderConfig)}
    assert fields <= set(cfg.decoder.keys())
    assert (cfg.decoder.gen_length, cfg.decoder.block_length, str(cfg.decoder.cache.value)) == (
        256,
        32,
        "none",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["decoder=stepwsie"],
            "unknown decoder 'stepwsie' (no conf/decoder/stepwsie.yaml): did you mean 'stepwise'?",
        ),
        (["-m", "decoder=stepwise,stepwize"], "unknown decoder 'stepwize'"),
        (["+experiment=defualt"], "did you mean 'default'?"),
        (["experiment=defualt"], "did you mean 'default'?"),
        (["++benchmark=gsm9k"], "did you mean 'gsm8k'?"),
        (["model=tiny_lada"], "did you mean 'tiny_llada'?"),
    ],
)
def test_check_choices_rejects_unknown_options(argv: list[str], message: str) -> None:
    with pytest.raises(SSDError) as info:
        check_choices(argv)
    assert message in str(info.value)


def test_check_choices_accepts_valid_and_leaves_the_rest_to_hydra() -> None:
    check_choices(
        [
            "-m",
            "decoder=stepwise",
            "model=tiny_llada,tiny_dream",
            "+experiment=default",
            "decoder.gen_length=64",
            "model=glob(tiny_*)",
            "hydra/launcher=basic",
            "--cfg",
            "job",
        ]
    )
    assert "_schema" not in options("model")


def test_cli_typo_is_one_line_with_a_suggestion() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ssd.run", "decoder=stepwsie"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "did you mean 'stepwise'" in lines[0]


# --- the base config: the embedded default, and the frame a benchmark carries ------------------------------


def frame_of(cfg) -> tuple[int, int, str]:
    return (cfg.decoder.gen_length, cfg.decoder.block_length, str(cfg.decoder.cache.value))


def test_the_base_config_is_the_embedded_model_on_its_task() -> None:
    cfg = compose_run([])
    assert (cfg.model.name, cfg.model.path) == ("llada", "ssd/assets/arith-llada")
    assert (cfg.benchmark.name, cfg.decoder.name, cfg.sweep, cfg.limit) == (
        "arith",
        "stepwise",
        "adhoc",
        None,
    )
    assert frame_of(cfg) == (24, 8, "dual")  # conf/frame/arith.yaml, not stepwise's own 256/32/none


@pytest.mark.parametrize("decoder", options("decoder"))
def test_the_benchmarks_frame_applies_over_every_decoders_defaults(decoder: str) -> None:
    assert frame_of(compose_run([f"decoder={decoder}"])) == (24, 8, "dual")


def test_explicit_decoder_settings_win_over_the_frame() -> None:
    cfg = compose_run(["decoder=ssd", "decoder.block_length=4", "decoder.cache=prefix"])
    assert frame_of(cfg) == (24, 4, "prefix")
    # an experiment's own frame wins too (set after the benchmark's), and so does a swept value
    cfg = compose_run(["+experiment=ssd_paper", "benchmark=arith", "decoder.block_length=32"])
    assert frame_of(cfg) == (256, 32, "dual")


def test_a_benchmark_without_a_frame_keeps_each_decoders_defaults() -> None:
    assert frame_of(compose_run(["model=llada", "benchmark=gsm8k"])) == (256, 32, "none")
    assert frame_of(compose_run(["model=llada", "benchmark=gsm8k", "decoder=fast_dllm"])) == (256, 32, "dual")
    assert frame_of(compose_run(["model=llada", "benchmark=gsm8k", "decoder=ssd"])) == (256, 8, "dual")
    cfg = compose_run(["model=llada", "benchmark=gsm8k", "decoder.gen_length=512"])
    assert frame_of(cfg) == (512, 32, "none")


def test_choosing_a_random_model_says_so_in_one_line(capsys: pytest.CaptureFixture) -> None:
    from ssd.run import say_if_random

    say_if_random(["model=tiny_llada", "limit=3"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("note: model=tiny_llada has random weights")
    assert "model=arith_llada" in out
    say_if_random(["-m", "model=llada,tiny_dream"])
    assert capsys.readouterr().out.startswith("note: model=tiny_dream has random weights")
    for argv in ([], ["model=arith_llada"], ["model=llada", "benchmark=gsm8k"], ["model.path=x"]):
        say_if_random(argv)
        assert capsys.readouterr().out == ""
