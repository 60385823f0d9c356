"""Nothing lost, nothing wiped: output paths, damaged inputs and limits from the command line.

Every case asserts the exit code, the one-line message, and that no file outside the run's
own outputs changed (a snapshot of the whole temporary folder, contents included).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from o1search.checkpoint import (
    MARKER_FILE,
    OutputPathError,
    atomic_output_dir,
    check_output_dir,
    output_state,
    record_entries,
    save_checkpoint,
)
from o1search.cli import main
from o1search.policy import load_policy

SFT = ["train", "--algo", "sft", "--steps", "2", "--problems", "8", "--eval-problems", "0",
       "--no-progress"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def user_folder(root: Path) -> Path:
    d = root / "DIR"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.txt").write_text("four years of work\n")
    (d / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return d


def one_line_error(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("o1search: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------- output folders
def test_train_refuses_a_folder_of_user_files(cwd, capsys):
    user_folder(cwd)
    before = snapshot(cwd)
    one_line_error(capsys, main([*SFT, "--out", "DIR"]), "'DIR'", "did not write",
                   "--overwrite")
    assert snapshot(cwd) == before


def test_train_overwrite_keeps_every_other_file(cwd, capsys):
    d = user_folder(cwd)
    before = snapshot(cwd)
    assert main([*SFT, "--out", "DIR", "--overwrite"]) == 0
    after = snapshot(cwd)
    for name, digest in before.items():  # the user's files are all there, unchanged
        assert after[name] == digest, name
    assert load_policy(d)[0] is not None
    marker = json.loads((d / MARKER_FILE).read_text())
    assert "thesis.txt" not in marker["files"] and "model.safetensors" in marker["files"]
    # Still not ours as a whole: a second save without --overwrite is refused.
    capsys.readouterr()
    one_line_error(capsys, main([*SFT, "--out", "DIR"]), "did not write")
    assert (d / "thesis.txt").read_text() == "four years of work\n"


@pytest.mark.parametrize("out", [".", "..", "/"])
def test_train_refuses_the_working_directory(cwd, capsys, out):
    (cwd / "notes.txt").write_text("keep me")
    before = snapshot(cwd)
    one_line_error(capsys, main([*SFT, "--out", out]), "working directory")
    assert snapshot(cwd) == before


def test_train_refuses_an_unwritable_place_before_training(cwd, capsys):
    (cwd / "F").write_text("a file")
    before = snapshot(cwd)
    one_line_error(capsys, main([*SFT, "--out", "F/ckpt"]), "'F' is a file")
    one_line_error(capsys, main([*SFT, "--out", "F"]), "is a file")
    if Path("/proc/self").exists():  # /proc takes no new directories, even for root
        one_line_error(capsys, main([*SFT, "--out", "/proc/x"]), "/proc", "cannot be written")
    assert snapshot(cwd) == before


def test_train_replaces_its_own_checkpoint_and_refuses_its_input(cwd, capsys):
    assert main([*SFT, "--out", "ck"]) == 0
    first = snapshot(cwd / "ck")
    assert output_state(cwd / "ck") == "ours"
    assert main([*SFT, "--out", "ck", "--seed", "1"]) == 0  # our own output: replaced
    assert snapshot(cwd / "ck") != first and output_state(cwd / "ck") == "ours"
    assert sorted(os.listdir(cwd)) == ["ck"]  # no stray temporary or backup folders
    capsys.readouterr()
    kept = snapshot(cwd)
    one_line_error(capsys, main([*SFT, "--model", "ck", "--out", "ck"]), "input checkpoint")
    assert snapshot(cwd) == kept


def test_a_file_added_to_a_checkpoint_makes_it_the_users(cwd, capsys):
    assert main([*SFT, "--out", "ck"]) == 0
    (cwd / "ck" / "my_notes.md").write_text("mine")
    capsys.readouterr()
    before = snapshot(cwd)
    one_line_error(capsys, main([*SFT, "--out", "ck"]), "did not write")
    assert snapshot(cwd) == before


def test_forged_marker_does_not_cover_unlisted_files(tmp_path):
    d = user_folder(tmp_path)
    (d / MARKER_FILE).write_text(json.dumps(
        {"format": "o1search-output/1", "kind": "checkpoint", "files": ["thesis.txt"]}))
    assert output_state(d) == "foreign"  # sub/ is not listed
    with pytest.raises(OutputPathError):
        check_output_dir(d)


def test_search_tree_html_under_a_file_fails_before_search(cwd, capsys):
    (cwd / "F").write_text("x")
    before = snapshot(cwd)
    one_line_error(capsys, main(["search", "--problems", "1", "--tree-html", "F/t.html",
                                 "--no-progress"]), "--tree-html", "is a file")
    (cwd / "D").mkdir()
    one_line_error(capsys, main(["search", "--problems", "1", "--tree-html", "D",
                                 "--no-progress"]), "is a folder")
    assert snapshot(cwd) == {**before, "D/": "dir"}


def test_demo_refuses_a_file_and_a_folder_of_user_files(cwd, capsys):
    (cwd / "F").write_text("x")
    user_folder(cwd)
    before = snapshot(cwd)
    one_line_error(capsys, main(["demo", "--quick", "--no-progress", "--out", "F"]), "is a file")
    one_line_error(capsys, main(["demo", "--quick", "--no-progress", "--out", "DIR"]),
                   "did not write")
    assert snapshot(cwd) == before


def test_interrupted_run_leaves_the_previous_run_untouched(tmp_path):
    out = tmp_path / "run"
    with atomic_output_dir(out, kind="demo-run") as work:
        (work / "report.json").write_text('{"run": 1}')
        (work / "prm").mkdir()
        (work / "prm" / "w.bin").write_bytes(b"old")
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(out, kind="demo-run") as work:
            (work / "prm").mkdir()
            (work / "prm" / "w.bin").write_bytes(b"new")  # new PRM, then the interrupt
            raise KeyboardInterrupt
    assert snapshot(tmp_path) == before  # old report beside the old PRM, nothing stray


def test_save_checkpoint_never_deletes_user_files(tmp_path):
    model, tok = load_policy()
    d = user_folder(tmp_path)
    before = snapshot(d)
    with pytest.raises(OutputPathError, match="did not write"):
        save_checkpoint(d, model, tok)
    assert snapshot(d) == before


# ------------------------------------------------------------------- damaged inputs
@pytest.fixture
def checkpoint(tmp_path):
    model, tok = load_policy()
    return save_checkpoint(tmp_path / "ck", model, tok)


@pytest.mark.parametrize("damage, needle", [
    (lambda d: os.truncate(d / "model.safetensors", (d / "model.safetensors").stat().st_size // 2),
     "model.safetensors' is damaged"),
    (lambda d: os.truncate(d / "model.safetensors", 5), "model.safetensors' is damaged"),
    (lambda d: os.truncate(d / "config.json", 20), "config.json' is damaged"),
    (lambda d: (d / "tokenizer.json").write_text(""), "tokenizer.json' is damaged"),
])
def test_damaged_policy_checkpoint_is_named(checkpoint, capsys, damage, needle):
    damage(checkpoint)
    one_line_error(capsys, main(["search", "--model", str(checkpoint), "--problems", "1",
                                 "--no-progress"]), needle)


def test_damaged_prm_head_is_named(tmp_path, capsys):
    from o1search.reward import ProcessRewardModel

    model, tok = load_policy()
    path = ProcessRewardModel(model, tok).save(tmp_path / "prm")
    head = path / "reward_head.safetensors"
    os.truncate(head, head.stat().st_size - 3)
    capsys.readouterr()  # the set-up's own progress bars (load, save) are not the CLI's output
    one_line_error(capsys, main(["search", "--prm", str(path), "--problems", "1",
                                 "--no-progress"]), "reward_head.safetensors' is damaged")


def test_huge_budget_is_a_one_line_error(capsys):
    one_line_error(capsys, main(["search", "--budget", "100000000000000000000", "--problems", "1",
                                 "--no-progress"]), "--budget", "limit")
    one_line_error(capsys, main(["demo", "--budgets", "64,100000000000000000000",
                                 "--no-progress"]), "limit")


@pytest.mark.parametrize("answer, needle", [
    ("9" * 5000, "give very long numbers as strings"),
    ('"' + "9" * 5000 + '"', "characters long"),
    ("NaN", "is nan"),
    ("Infinity", "is inf"),
    ("-Infinity", "is -inf"),
    ("true", "got true"),
])
def test_bad_jsonl_answers_name_file_and_line(tmp_path, capsys, answer, needle):
    f = tmp_path / "data.jsonl"
    f.write_text('{"question": "1+1", "answer": 2}\n' + '{"question": "q", "answer": '
                 + answer + "}\n")
    msg = one_line_error(capsys, main(["search", "--task", str(f), "--problems", "1",
                                       "--no-progress"]), needle)
    assert f"{f}:2:" in msg


def test_unrepresentable_prompt_characters_are_warned_about(tmp_path, capsys):
    from o1search.policy.model import unrepresentable_chars

    _, tok = load_policy()
    text = "Πόσο 2+2 😀"
    vocab = tok.get_vocab()  # the character policy: one token per known character
    expected = sorted({c for c in text if not c.isspace() and c not in vocab})
    assert expected and unrepresentable_chars(tok, [text]) == expected
    assert unrepresentable_chars(tok, ["12+3=15"]) == []
    f = tmp_path / "greek.jsonl"
    f.write_text("".join(json.dumps({"question": f"Πόσο κάνει {i}+1", "answer": i + 1}) + "\n"
                         for i in range(4)))
    assert main(["search", "--task", str(f), "--split", "train", "--problems", "1",
                 "--algo", "greedy", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "o1search: warning:" in err and "<unk>" in err and "Π" in err


# ------------------------------------------------------------------- train rounds, resume
REST = ["train", "--algo", "rest", "--steps", "3", "--problems", "8", "--samples", "2",
        "--eval-problems", "0", "--no-progress"]


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_rest_killed_between_rounds_resumes_to_the_same_weights(cwd, capsys):
    import signal
    import subprocess
    import sys
    import time

    import o1search
    import torch

    assert main([*REST, "--rounds", "3", "--out", "straight"]) == 0
    assert (cwd / "straight" / "latest").read_text().strip() == "round-3"
    env = {**os.environ, "PYTHONPATH": str(Path(o1search.__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "o1search", *REST, "--rounds", "3",
                             "--out", "killed"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while not (cwd / "killed" / "latest").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "no round finished"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # right after round 1 is on disk
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (cwd / "killed" / "latest").read_text().strip() != "round-3"  # it really was cut
    capsys.readouterr()
    assert main([*REST, "--rounds", "3", "--out", "killed", "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = weights(cwd / "straight" / "round-3"), weights(cwd / "killed" / "round-3")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # The run folder loads as its latest round.
    loaded = load_policy(cwd / "killed")[0].state_dict()
    for k in b:
        torch.testing.assert_close(loaded[k], b[k], rtol=0, atol=0)


def test_resume_refuses_other_options_and_a_folder_without_a_run(cwd, capsys):
    assert main([*REST, "--rounds", "1", "--out", "run"]) == 0
    capsys.readouterr()
    before = snapshot(cwd)
    one_line_error(capsys, main([*REST, "--rounds", "2", "--seed", "5", "--out", "run",
                                 "--resume"]), "other options")
    assert main([*SFT, "--out", "plain"]) == 0
    capsys.readouterr()
    one_line_error(capsys, main([*REST, "--out", "plain", "--resume"]), "no ReST run")
    one_line_error(capsys, main([*SFT, "--out", "plain", "--resume"]), "--algo rest")
    assert {k: v for k, v in snapshot(cwd).items() if not k.startswith("plain")} == before


def test_overwrite_renames_a_same_named_user_folder_aside(tmp_path):
    d = user_folder(tmp_path)
    with atomic_output_dir(d, kind="demo-run", overwrite=True) as work:
        (work / "sub").mkdir()
        (work / "sub" / "new.txt").write_text("ours")
    assert (d / "sub" / "new.txt").read_text() == "ours"
    assert (d / "sub.kept-1" / "data.csv").read_text() == "a,b\n1,2\n"
    assert (d / "thesis.txt").read_text() == "four years of work\n"


def test_a_run_killed_mid_save_stays_ours_to_resume(cwd, capsys):
    """Each point a ReST round can be killed at: round-N listed but not written yet, a
    half-written ``.round-N.tmp-…`` folder, a half-written ``latest``: the folder is still
    the run's own (resumable, replaceable); a stray name of the user's is not."""
    assert main([*REST, "--rounds", "1", "--out", "run"]) == 0
    run = cwd / "run"
    record_entries(run, kind="train-run", add=("round-2",))  # listed, killed before the save
    assert output_state(run) == "ours"
    (run / ".round-2.tmp-x1y2").mkdir()  # killed inside save_checkpoint
    (run / ".round-2.tmp-x1y2" / "model.safetensors").write_bytes(b"half")
    (run / ".latest.tmp-123").write_text("round-")  # killed inside the pointer's write
    assert output_state(run) == "ours"
    capsys.readouterr()
    assert main([*REST, "--rounds", "2", "--out", "run", "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert (run / "latest").read_text().strip() == "round-2"
    (run / ".notes.tmp-1").write_text("mine")  # not a leftover of any listed name
    assert output_state(run) == "foreign"
