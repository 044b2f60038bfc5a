"""The checks package's shared kit: every checker (of every notebook) never raises on broken learner code,
stops a learner's endless loop, has a reference that passes it; the fallback for stubs; the quizzes."""

import ast
import re
import time
from pathlib import Path

import numpy as np
import pytest

from rlhf_tutorial import checks
from rlhf_tutorial.checks import CheckResult, _kit

PACKAGE = Path(checks.__file__).parent
CHECKERS = sorted((getattr(checks, n) for n in checks.__all__ if n.startswith("check_")), key=lambda c: c.__name__)


def test_one_file_per_notebook_and_every_public_name_exported():
    files = sorted(p.stem for p in PACKAGE.glob("nb*.py"))
    assert files == [f"nb{n:02d}" for n in range(11)]
    for mod in checks.NOTEBOOK_MODULES:
        for name in mod.__all__:
            assert getattr(checks, name) is getattr(mod, name), name
    old_names = {"CaseResult", "CheckResult", "check_discounted_returns", "check_gae", "check_reinforce_loss",
                 "check_ppo_clip_loss", "check_value_loss", "check_q_learning_update", "check_soft_q_target",
                 "check_bradley_terry_loss", "check_version_tuple", "check_answer_probabilities", "check_dpo_loss",
                 "check_token_gae", "check_disagreement", "check_sft_loss", "check_last_token_index"}
    assert old_names <= set(checks.__all__)


def test_every_public_function_of_the_package_names_its_notebook():
    missing = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if not re.search(r"notebook", ast.get_docstring(node) or "", re.I):
                    missing.append(f"{path.name}:{node.name}")
    assert not missing, missing


def test_each_checker_lives_in_its_notebooks_file():
    for checker in CHECKERS:
        nb = checker.__module__.rsplit(".nb", 1)[1]
        assert re.search(rf"[Nn]otebooks? {nb}", checker.__doc__), checker.__name__


# --------------------------------------------------------------------------- never a traceback
def _raises(*args, **kwargs):
    raise KeyError("oops, my bug")


def _wrong_shape(*args, **kwargs):
    return np.zeros((2, 3, 4))


def _returns_none(*args, **kwargs):
    return None


def _returns_text(*args, **kwargs):
    return "forty-two"


def _stub(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [_raises, _wrong_shape, _returns_none, _returns_text, _stub, 3],
                         ids=["raises", "wrong_shape", "none", "text", "stub", "not_callable"])
def test_checker_never_raises_on_broken_learner_code(checker, bad, capsys):
    result = checker(bad)
    out = capsys.readouterr().out
    assert isinstance(result, CheckResult) and not result
    assert "❌" in out and "Traceback" not in out
    if bad is _raises:
        assert "KeyError" in out and "oops, my bug" in out
    elif bad is _stub:
        assert "NotImplementedError" in out
    elif isinstance(bad, int):
        assert "expected a function" in out


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_every_checker_has_a_reference_that_passes_it(checker):
    assert callable(checker.reference)
    assert checker(checker.reference, verbose=False), checker.__name__


def test_result_object_and_quiet_mode(capsys):
    result = checks.check_gae(checks.gae_reference, verbose=False)
    assert capsys.readouterr().out == ""
    assert bool(result) and len(result.cases) == 6
    assert "passed=True" in repr(result) and "check_gae" in str(result)


# --------------------------------------------------------------------------- time limit
def test_an_endless_loop_is_stopped_and_reported(monkeypatch, capsys):
    monkeypatch.setattr(_kit, "TIME_LIMIT", 0.3)

    def endless(*args):
        while True:
            pass

    start = time.perf_counter()
    result = checks.check_gae(endless)
    assert time.perf_counter() - start < 5  # one timeout, the other cases are skipped
    out = capsys.readouterr().out
    assert not result and "timed out after 0.3 s" in out and "Traceback" not in out


def test_time_limit_in_a_thread_and_bad_limits():
    import threading

    box = {}

    def run():
        try:
            checks.call_with_time_limit(time.sleep, (5,), seconds=0.2)
        except checks.LearnerTimeout as exc:
            box["exc"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(3)
    assert "timed out" in str(box["exc"])
    assert checks.call_with_time_limit(lambda x: x + 1, (1,), seconds=1) == 2
    with pytest.raises(ValueError, match="seconds"):
        checks.call_with_time_limit(print, seconds=0)


# --------------------------------------------------------------------------- fallback for stubs
def my_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A student stub with a docstring."""
    raise NotImplementedError


def test_is_stub():
    assert checks.is_stub(my_gae) and checks.is_stub(_stub)
    assert not checks.is_stub(checks.gae_reference) and not checks.is_stub(_raises) and not checks.is_stub(print)


def test_use_falls_back_to_the_reference_with_a_banner(capsys):
    fn = checks.use(my_gae, checks.check_gae)
    out = capsys.readouterr().out
    assert "using the reference solution: your function my_gae() is not written yet" in out
    assert "❌" not in out and fn.__name__ == "my_gae"
    r = np.array([1.0, 1.0])
    adv, ret = fn(r, r * 0, r * 0, r * 0, r * 0, gamma=0.5, lam=1.0)   # keywords bound to the stub's names
    np.testing.assert_allclose(adv, [1.5, 1.0])


def test_use_checks_and_returns_a_written_function(capsys):
    assert checks.use(checks.gae_reference, checks.check_gae) is checks.gae_reference
    assert "✅" in capsys.readouterr().out

    def wrong(*args):
        return checks.gae_reference(*args)[1]

    assert checks.use(wrong, checks.check_gae) is wrong
    out = capsys.readouterr().out
    assert "❌" in out and "as it is" in out


def test_use_with_defaults_options_and_an_explicit_reference(capsys):
    def gae_over_tokens(rewards, values, mask, gamma=1.0, lam=0.95):
        raise NotImplementedError

    import torch

    fn = checks.use(gae_over_tokens, checks.check_token_gae)
    r = torch.tensor([[0.0, 1.0]])
    adv, _ = fn(r, torch.zeros_like(r), torch.ones_like(r))      # the stub's defaults γ = 1, λ = 0.95
    torch.testing.assert_close(adv, torch.tensor([[0.95, 1.0]]))

    def my_loss(logprobs, returns, baseline):
        raise NotImplementedError

    lp, g = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 3.0])
    loss = checks.use(my_loss, checks.check_reinforce_loss, normalize=True)(lp, g, None)
    torch.testing.assert_close(loss, checks.reinforce_loss_reference(lp, g, None, normalize=True))

    def sarsa(env, n_episodes, alpha, gamma, epsilon, seed):
        raise NotImplementedError

    assert checks.use(sarsa, reference=checks.sarsa_reference).__wrapped_reference__ is checks.sarsa_reference
    assert "sarsa() is not written yet" in capsys.readouterr().out


def test_use_rejects_bad_input():
    with pytest.raises(TypeError, match="fn"):
        checks.use(3, checks.check_gae)
    with pytest.raises(TypeError, match="checker"):
        checks.use(my_gae, "check_gae")
    with pytest.raises(ValueError, match="reference"):
        checks.use(my_gae)


# --------------------------------------------------------------------------- quizzes
@pytest.mark.parametrize("nb", [f"{n:02d}" for n in range(11)])
def test_every_notebook_has_a_quiz_of_three_to_five_questions(nb):
    qs = checks.questions(nb)
    assert 3 <= len(qs) <= 5
    for q in qs:
        assert q.text.strip() and len(set(q.options)) == len(q.options) and q.explain.strip()
    right = checks.grade_quiz(nb, [q.answer for q in qs])
    assert right and right.correct == len(qs)
    wrong = checks.grade_quiz(nb, {1: (qs[0].answer + 1) % len(qs[0].options)})
    assert wrong.correct == 0 and "❌ 1." in str(wrong) and "not answered" in str(wrong)


def test_right_answers_are_not_always_in_the_same_place():
    positions = [q.answer for nb in range(11) for q in checks.questions(nb)]
    counts = np.bincount(positions)
    assert len(counts) >= 4 and counts.max() <= 0.4 * len(positions)


def test_grade_quiz_accepts_letters_indices_and_text():
    q = checks.questions("05")[0]
    letter = "abcdefgh"[q.answer]
    assert checks.grade_quiz(5, {1: letter}).correct == 1
    assert checks.grade_quiz("5", {1: letter.upper() + ")"}).correct == 1
    assert checks.grade_quiz("05", {1: q.options[q.answer]}).correct == 1
    with pytest.raises(ValueError, match="question numbers"):
        checks.grade_quiz("05", {9: "a"})
    with pytest.raises(TypeError, match="answers"):
        checks.grade_quiz("05", "abc")
    with pytest.raises(ValueError, match="notebook"):
        checks.quiz("99")
    with pytest.raises(ValueError, match="nb"):
        checks.quiz("five")


def test_quiz_text_fallback(capsys):
    checks.quiz("03", widgets=False)
    out = capsys.readouterr().out
    assert "Quiz for notebook 03" in out and 'checks.grade_quiz("03"' in out and "a) " in out


def test_quiz_widgets_give_immediate_feedback():
    ipywidgets = pytest.importorskip("ipywidgets")
    from rlhf_tutorial.checks._quiz import _widget_quiz

    qs = checks.questions("09")
    box = _widget_quiz("09", qs, ipywidgets)
    first = box.children[1]
    radio, feedback = first.children[1], first.children[2]
    radio.value = qs[0].answer
    assert feedback.value.startswith("✅")
    radio.value = (qs[0].answer + 1) % len(qs[0].options)
    assert feedback.value.startswith("❌")
    assert "1 of" in box.children[-1].value
