"""The atheris fuzz targets in fuzz/, each run for a short, bounded stretch on every test run.

A run mutates the seed corpus with a fixed seed (so a failure here replays with the same
command) and must end with exit code 0 and no crash, timeout or out-of-memory artifact. New
inputs go to a scratch folder in tmp_path, listed before the seeds, so the repository is never
written to. Longer runs: see fuzz/README.md.
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
TARGETS = [("fuzz_idx.py", "corpus_idx"), ("fuzz_preprocess.py", "corpus_images"),
           ("fuzz_model.py", "corpus_models")]
RUNS, SECONDS = 20_000, 15  # whichever comes first; each target reaches its checks many times


@pytest.fixture(scope="module")
def atheris_installed():
    if importlib.util.find_spec("atheris") is None:  # fail, never skip: CI must run the fuzzers
        pytest.fail("atheris is not installed: pip install -e '.[dev]' (Linux x86-64 wheels)", pytrace=False)


@pytest.mark.parametrize("target,corpus", TARGETS, ids=[t for t, _ in TARGETS])
def test_fuzz_target_finds_no_crash(tmp_path, atheris_installed, target, corpus):
    seeds = sorted((FUZZ / corpus).iterdir())
    assert seeds and all(p.stat().st_size < 50_000 for p in seeds)
    before = {p: p.read_bytes() for p in seeds}
    scratch = tmp_path / "corpus"
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, str(FUZZ / target), str(scratch), str(FUZZ / corpus), "-seed=1",
         f"-atheris_runs={RUNS}", f"-max_total_time={SECONDS}", "-timeout=30", "-rss_limit_mb=2048",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=SECONDS + 240,
        env=dict(os.environ, TMPDIR=str(tmp_path)))  # the model target's scratch file lands here too
    log = result.stdout + result.stderr
    artifacts = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))]
    assert result.returncode == 0 and not artifacts, f"{target}: {artifacts}\n{log[-4000:]}"
    done = re.search(r"Done (\d+) (?:runs )?in", log)  # "Done 20000 in 4 second(s)" or "Done 9 runs in 15…"
    assert done and int(done.group(1)) > len(seeds), log[-2000:]  # it got past the seeds
    assert {p: p.read_bytes() for p in sorted((FUZZ / corpus).iterdir())} == before  # seeds untouched
