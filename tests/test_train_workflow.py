"""The train rules in Snakemake dry runs: model entries with a `model:` type key, genomics-only cohorts, configs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from memamba.models.registry import model_parameters
from memamba.train.coxnet import CoxNetParams

ROOT = Path(__file__).resolve().parents[1]
BLCA = ROOT / "tests/data/tcga/blca"


def dry_run(config: dict, tmp_path: Path) -> str:
    """`snakemake -n -p` of the repository's workflow with `config` (output_dir under tmp_path); stdout."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), **config}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def train_commands(output: str) -> list[str]:
    return [line for line in output.splitlines() if "memamba train" in line]


@pytest.fixture(scope="module")
def genomics_only_plan(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Dry run of a slide-less cohort with an ablation-style entry (type key, train override) and CoxNet."""
    config = {
        "cohorts": {"blca": {"table": str(BLCA / "mcat/tcga_blca_all_clean.csv"),
                             "splits_dir": str(BLCA / "splits/5foldcv")}},
        "models": {"memamba_no_ot": {"model": "memamba", "use_ot": False, "train": {"epochs": 3}}, "coxnet": {}},
        "train": {"epochs": 7},
    }
    return dry_run(config, tmp_path_factory.mktemp("plan"))


def test_model_entry_picks_its_type_with_model_and_overrides_train_settings(genomics_only_plan: str) -> None:
    commands = [command for command in train_commands(genomics_only_plan) if "memamba_no_ot" in command]
    assert len(commands) == 5
    command = commands[0]
    assert "--model memamba " in command and "runs/blca/memamba_no_ot/fold_" in command
    assert '"use_ot": false' in command and '"model":' not in command
    assert '"epochs": 3' in command


def test_cohort_without_slides_trains_genomics_only_without_tiling_or_features(genomics_only_plan: str) -> None:
    assert not re.search(r"^(tile|features|tile_manifest)\s+\d+$", genomics_only_plan, flags=re.MULTILINE)
    commands = train_commands(genomics_only_plan)
    assert len(commands) == 10 and all("--features" not in command for command in commands)
    assert sum("--model coxnet" in command for command in commands) == 5


@pytest.mark.parametrize("name", ["tcga_genomics.yaml", "ablation.yaml"])
def test_shipped_configs_are_valid_and_name_known_models_and_parameters(name: str) -> None:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"), set_default=True)
    for entry, settings in config["models"].items():
        model = settings.get("model", entry)
        params = {key for key in settings if key not in ("model", "train")}
        known = set(CoxNetParams.__dataclass_fields__) if model == "coxnet" else set(model_parameters(model))
        assert params <= known, f"{entry}: unknown parameters {params - known}"
    for cohort in config["cohorts"].values():
        assert "demo" in cohort or (ROOT / cohort["table"]).is_file()
