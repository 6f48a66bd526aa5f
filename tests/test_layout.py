"""The code mirrors the workflow: one rule file, one subpackage and one CLI module per stage;
each rule runs the subcommand named like it; subpackages import only the stages before them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "workflow" / "xrayfactory"
RULES = REPO / "workflow" / "rules"


def test_every_rule_runs_the_subcommand_named_like_it():
    """One CLI module per rule file (same stage name, at most 250 lines) and one subpackage;
    each rule's command is the subcommand named like the rule."""
    for smk in RULES.glob("*.smk"):
        text = smk.read_text()
        blocks = re.split(r"^rule ", text, flags=re.M)[1:]
        commands = {}
        for block in blocks:
            m = re.search(r"python -m xrayfactory (?:--threads \{threads\} )?([\w-]+)", block)
            if m:
                commands[block.split(":", 1)[0]] = m[1]
        if smk.stem == "common":
            assert not blocks
            continue
        assert commands, smk
        assert all(cmd == rule.replace("_", "-") for rule, cmd in commands.items()), commands
        cli = PACKAGE / "cli" / f"{smk.stem}.py"
        assert len(cli.read_text().splitlines()) <= 250, cli
        assert (PACKAGE / smk.stem / "__init__.py").exists(), smk.stem
        for cmd in commands.values():
            assert f'"{cmd}"' in cli.read_text(), (cmd, cli)


def test_subpackages_import_only_what_their_docstring_allows():
    """Each subpackage's docstring ends with "May import: a, b." (or owns no dependency, core);
    every xrayfactory import of its modules is from itself or from that list."""
    for init in PACKAGE.glob("*/__init__.py"):
        pkg = init.parent.name
        if pkg == "cli":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        m = re.search(r"May import: ([\w, ]+)\.", doc)
        allowed = {pkg} | (set(m[1].replace(" ", "").split(",")) if m else set())
        assert m or pkg == "core", f"{init}: no 'May import:' line"
        for module in init.parent.glob("*.py"):
            for dep in re.findall(r"from xrayfactory\.(\w+)", module.read_text()):
                assert dep in allowed, f"{module.relative_to(REPO)} imports {dep}"


def test_no_handler_passes_the_namespace_on():
    """Handlers call package functions with plain arguments, never the argparse Namespace."""
    for module in (PACKAGE / "cli").glob("*.py"):
        for call in ast.walk(ast.parse(module.read_text())):
            if isinstance(call, ast.Call):
                for arg in call.args:
                    assert not (isinstance(arg, ast.Name) and arg.id == "a"), (
                        f"{module.name}:{call.lineno} passes the Namespace"
                    )


def test_training_sampling_and_rendering_rules_record_a_benchmark():
    """Real per-job time and memory (Snakemake's benchmark files) for every heavy rule, under
    results/benchmarks/<rule>/ (benchmarks/rule_times.py sums them per rule)."""
    heavy = ("train_", "sample_", "render_", "import_")
    for smk in RULES.glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            if name.startswith(heavy):
                assert "    benchmark:\n" in block, f"{smk.name}: rule {name}"
            if "    benchmark:\n" in block:
                path = block.split("    benchmark:\n", 1)[1].split("\n", 1)[0].strip()
                assert path.startswith(f'"results/benchmarks/{name}/'), f"{name}: {path}"


def test_rule_times_sums_benchmark_files_per_rule(tmp_path):
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    jobs = {"train_detector/real/fold0_seed0.tsv": (50.0, 600.0, 40.0),
            "train_detector/drr/fold0_seed0.tsv": (30.0, 700.0, 25.0),
            "realism/fold0.tsv": (7.5, 500.0, 6.0)}  # fmt: skip
    for rel, (s, rss, cpu) in jobs.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(head + f"{s}\t0:00:{int(s)}\t{rss}\t0\t0\t0\t0\t0\t90\t{cpu}\n")
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rule_times.py"), str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in r.stdout.splitlines()[2:]}
    assert list(rows) == ["train_detector", "realism", "total"]  # longest first
    assert [float(v) for v in rows["train_detector"]] == [2, 80, 40, 50, 65, 700]
    assert [float(v) for v in rows["total"][:2]] == [3, 87.5]
    empty = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rule_times.py"), str(tmp_path / "none")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert empty.returncode != 0 and "no benchmark files" in empty.stderr
    # a cohort sheet among them: the folder given was results/, not results/benchmarks/
    (tmp_path / "cohort.tsv").write_text("subject\tct\ndemo00\tct.nii.gz\n")
    wrong = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rule_times.py"), str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert f"error: {tmp_path / 'cohort.tsv'}: not a Snakemake benchmark file" in wrong.stderr


def test_benchmarks_use_only_public_package_names():
    """Benchmarks import what the package offers, never a private helper."""
    for script in (REPO / "benchmarks").glob("*.py"):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xrayfactory"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{script.name} imports {private} from {node.module}"
