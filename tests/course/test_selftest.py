"""course_lib.course.selftest: ./course test's tiers, its parallel settings and its CPU variants."""

import pytest

from course_lib.course import selftest


@pytest.fixture
def calls(monkeypatch):
    """Every pytest command the self-test would start, with its environment; ruff passes."""
    seen = []
    monkeypatch.setattr(selftest, "lint", lambda: 0)
    monkeypatch.setattr(selftest, "pytest", lambda args, env: seen.append((args, env)) or 0)
    monkeypatch.setattr(selftest, "cores", lambda: 2)
    return seen


def test_full_run_covers_every_folder_on_every_core(calls):
    assert selftest.main([]) == 0
    (args, env), = calls
    assert args[:3] == ["tests", "solutions", "notebooks"] and "-m" not in args
    assert args[args.index("-n") + 1] == "2" and args[args.index("--dist") + 1] == "loadscope"
    assert env["OMP_NUM_THREADS"] == "1" and env["COURSE_HEADLESS"] == "1"


def test_quick_run_deselects_the_slow_tiers_and_keeps_pytest_options(calls):
    assert selftest.main(["--quick", "-k", "roi_align"]) == 0
    (args, _), = calls
    marks = args[args.index("-m") + 1]
    assert args[0] == "tests" and "roi_align" not in args[:2] and all(f"not {m}" in marks for m in ("kernel", "training", "notebooks", "browser"))
    assert args[-2:] == ["-k", "roi_align"]


def test_cpu_variants_run_the_checked_cells_under_each_kernel_family(calls, capsys):
    assert selftest.main(["--cpu-variants"]) == 0
    assert len(calls) == len(selftest.CPU_VARIANTS) == 3
    for (args, env), extra in zip(calls, selftest.CPU_VARIANTS.values(), strict=True):
        assert args[:2] == ["tests", "solutions"] and args[args.index("-m") + 1] == "equality or notebooks"
        assert all(env[k] == v for k, v in extra.items())
    assert "3 of 3 kernel families passed" in capsys.readouterr().out


def test_a_failing_variant_fails_the_command_and_is_named(monkeypatch, calls, capsys):
    monkeypatch.setattr(selftest, "pytest", lambda args, env: int(env.get("ONEDNN_MAX_CPU_ISA") == "AVX2"))
    assert selftest.main(["--cpu-variants"]) == 1
    assert "failed under: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" in capsys.readouterr().out


def test_lint_failure_stops_before_the_tests(monkeypatch, calls):
    monkeypatch.setattr(selftest, "lint", lambda: 1)
    assert selftest.main([]) == 1 and calls == []


def test_one_core_runs_without_workers(monkeypatch, calls):
    monkeypatch.setattr(selftest, "cores", lambda: 1)
    assert selftest.main(["--quick"]) == 0
    (args, env), = calls
    assert "-n" not in args and "--dist" not in args


def test_paths_given_replace_the_default_folders(calls):
    assert selftest.main(["tests/ops", "-x"]) == 0
    (args, _), = calls
    assert args[0] == "tests/ops" and "solutions" not in args and "-x" in args


def test_quick_and_variants_together_are_refused(calls):
    assert selftest.main(["--quick", "--cpu-variants"]) == 2 and calls == []
