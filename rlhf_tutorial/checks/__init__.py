r"""Exercise checkers, the fallback for unwritten exercises, and the quizzes (notebooks 00-10).

Each ``check_*`` function takes *your* function, calls it on several small hidden cases (a
termination, a truncation, a batch, a clipped ratio, a tie, ...), compares every answer with the
tested package version, and prints one friendly line per case that failed, with a hint about what
the case tests (shape? sign? masking? ties? truncation vs termination?). It never shows a bare
traceback: if your function raises, the exception's type and message are reported in one line, and
a call that runs longer than ``_kit.TIME_LIMIT`` seconds (an endless loop) is stopped and reported.
It returns a :class:`CheckResult`, truthy when every case passed, so a notebook cell, a test or CI
can ``assert check_gae(my_gae)``.

:func:`use` is what the student notebooks call instead: ``my_gae = checks.use(my_gae, checks.check_gae)``
checks your function and returns it, or, while it is still the ``raise NotImplementedError`` stub,
prints a banner and returns the checker's reference solution, so the rest of the notebook runs.
:func:`quiz` shows a notebook's concept questions; :func:`grade_quiz` grades answers offline.

The package has one file per notebook, in syllabus order (``nb00.py`` ... ``nb10.py``), each with its
checkers, their references and the notebook's ``QUIZ``; ``_kit.py`` is the shared kit.

- notebook 00: :func:`check_version_tuple` ``fn(version) -> (major, minor, patch)``
- notebook 01: :func:`check_q_learning_update` ``fn(Q, s, a, r, s_next, terminated, alpha, gamma)``
- notebook 02: :func:`check_discounted_returns` ``fn(rewards, gamma) -> (T,)``;
  :func:`check_reinforce_loss` ``fn(logprobs, returns, baseline) -> scalar``
- notebook 03: :func:`check_gae` ``fn(rewards, values, next_values, terminated, truncated, gamma, lam)``;
  :func:`check_ppo_clip_loss` ``fn(new_logp, old_logp, advantages, clip_coef) -> scalar``;
  :func:`check_value_loss` ``fn(new_values, old_values, returns, clip_coef) -> scalar``;
  :func:`check_soft_q_target` ``fn(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha) -> (B,)``
- notebook 04: :func:`check_answer_probabilities` ``fn(delta, beta, epsilon, tie_margin) -> (p_left, p_equal, p_right)``
- notebook 05: :func:`check_bradley_terry_loss` ``fn(r1, r2, y) -> scalar``
- notebook 06: :func:`check_disagreement` ``fn(returns_a, returns_b) -> (N,)``
- notebook 07: :func:`check_sft_loss` ``fn(logits, labels) -> scalar``
- notebook 08: :func:`check_last_token_index` ``fn(attention_mask) -> (B,)``
- notebook 09: :func:`check_token_gae` ``fn(rewards, values, response_mask, gamma, lam) -> (B, R)``
- notebook 10: :func:`check_dpo_loss` ``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)``

Example (notebook 03)::

    from rlhf_tutorial import checks
    assert checks.check_gae(my_gae)        # prints ✅ or, per failed case, what differed and a hint
    my_gae = checks.use(my_gae, checks.check_gae)   # the student notebook: yours, or the reference
    checks.quiz("03")                      # the notebook's concept questions
"""

from __future__ import annotations

from . import _kit, nb00, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10  # noqa: F401
from ._kit import (  # noqa: F401  (private names kept importable for the tests)
    BANNER,
    CaseResult,
    CheckResult,
    LearnerTimeout,
    call_with_time_limit,
    is_stub,
    use,
)
from ._quiz import Question, QuizResult, answer_key_markdown, grade_quiz, questions, quiz
from .nb00 import *  # noqa: F401,F403
from .nb01 import *  # noqa: F401,F403
from .nb02 import *  # noqa: F401,F403
from .nb03 import *  # noqa: F401,F403
from .nb04 import *  # noqa: F401,F403
from .nb05 import *  # noqa: F401,F403
from .nb06 import *  # noqa: F401,F403
from .nb07 import *  # noqa: F401,F403
from .nb08 import *  # noqa: F401,F403
from .nb09 import *  # noqa: F401,F403
from .nb10 import *  # noqa: F401,F403

NOTEBOOK_MODULES = (nb00, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10)

__all__ = ["CaseResult", "CheckResult", "LearnerTimeout", "call_with_time_limit", "is_stub", "use",
           "Question", "QuizResult", "quiz", "grade_quiz", "questions", "answer_key_markdown"]
for _m in NOTEBOOK_MODULES:
    __all__ += list(_m.__all__)
del _m
