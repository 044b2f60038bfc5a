"""Tests of rlhf_tutorial.tabular (notebook 01): hand-computed values and bad inputs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlhf_tutorial import tabular as tb

# --------------------------------------------------------------------------- a 2-state toy MDP


class TwoStateEnv(gym.Env):
    """State 0: action 0 stays (reward 1), action 1 ends the episode (reward 5), action 2 is a coin
    flip between ending with reward 4 and staying with reward 0. State 1 is absorbing/terminal."""

    def __init__(self):
        self.observation_space = gym.spaces.Discrete(2)
        self.action_space = gym.spaces.Discrete(3)
        self.P = {
            0: {
                0: [(1.0, 0, 1.0, False)],
                1: [(1.0, 1, 5.0, True)],
                2: [(0.5, 1, 4.0, True), (0.5, 0, 0.0, False)],
            },
            1: {a: [(1.0, 1, 0.0, True)] for a in range(3)},
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, a):
        outcomes = self.P[self.s][int(a)]
        i = self.np_random.choice(len(outcomes), p=[o[0] for o in outcomes])
        _, self.s, r, term = outcomes[i]
        return self.s, r, term, False, {}


class NoModelEnv(TwoStateEnv):
    def __init__(self):
        super().__init__()
        del self.P


class BoxActionEnv(TwoStateEnv):
    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,))


# --------------------------------------------------------------------------- the TD update
def test_q_learning_update_by_hand():
    Q = np.zeros((3, 2))
    Q[1] = [2.0, 5.0]
    # target = 1 + 0.9 * max(2, 5) = 5.5; delta = 5.5 - 0; Q[0, 1] = 0 + 0.5 * 5.5
    delta = tb.q_learning_update(Q, 0, 1, 1.0, 1, False, alpha=0.5, gamma=0.9)
    assert delta == pytest.approx(5.5)
    assert Q[0, 1] == pytest.approx(2.75)
    # terminated: no bootstrap. target = 1; delta = 1 - 2.75; Q[0, 1] = 2.75 - 0.5 * 1.75
    delta = tb.q_learning_update(Q, 0, 1, 1.0, 1, True, alpha=0.5, gamma=0.9)
    assert delta == pytest.approx(-1.75)
    assert Q[0, 1] == pytest.approx(1.875)
    # only the visited entry changed
    expected = np.zeros((3, 2))
    expected[1] = [2.0, 5.0]
    expected[0, 1] = 1.875
    np.testing.assert_allclose(Q, expected)


def test_truncated_transition_still_bootstraps():
    """A time limit is not a terminal state: terminated=False must bootstrap from Q[s_next]."""
    Q = np.zeros((2, 2))
    Q[1] = [-3.0, -4.0]
    delta = tb.q_learning_update(Q, 0, 0, -1.0, 1, False, alpha=1.0, gamma=1.0)
    assert delta == pytest.approx(-4.0)  # -1 + max(-3, -4)
    assert Q[0, 0] == pytest.approx(-4.0)


def test_q_learning_update_gamma_zero_and_alpha_zero():
    Q = np.ones((2, 2))
    assert tb.q_learning_update(Q, 0, 0, 2.0, 1, False, alpha=0.0, gamma=0.0) == pytest.approx(1.0)
    np.testing.assert_allclose(Q, np.ones((2, 2)))  # alpha = 0: no change


# --------------------------------------------------------------------------- epsilon-greedy
def test_epsilon_greedy_greedy_and_ties():
    rng = np.random.default_rng(0)
    assert {tb.epsilon_greedy([0.0, 2.0, 1.0], 0.0, rng) for _ in range(50)} == {1}
    tie_choices = [tb.epsilon_greedy([1.0, 3.0, 3.0], 0.0, rng) for _ in range(200)]
    assert set(tie_choices) == {1, 2}  # ties broken at random, never the worse action


def test_epsilon_greedy_explores_and_is_reproducible():
    rng = np.random.default_rng(1)
    counts = np.bincount([tb.epsilon_greedy([0.0, 10.0, 0.0, 0.0], 1.0, rng) for _ in range(4000)], minlength=4)
    assert counts.min() > 850  # ~1000 each when epsilon = 1
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    a = [tb.epsilon_greedy(np.zeros(4), 0.3, rng_a) for _ in range(100)]
    b = [tb.epsilon_greedy(np.zeros(4), 0.3, rng_b) for _ in range(100)]
    assert a == b


def test_linear_epsilon():
    assert tb.linear_epsilon(0, 10, 1.0, 0.0, 0.5) == pytest.approx(1.0)
    assert tb.linear_epsilon(1, 10, 1.0, 0.0, 0.5) == pytest.approx(0.8)
    assert tb.linear_epsilon(5, 10, 1.0, 0.0, 0.5) == pytest.approx(0.0)
    assert tb.linear_epsilon(9, 10, 1.0, 0.1, 0.5) == pytest.approx(0.1)
    assert tb.linear_epsilon(3, 10, 0.2, 0.2, 0.5) == 0.2  # constant schedule is exact
    assert tb.linear_epsilon(0, 10, 1.0, 0.1, 0.0) == pytest.approx(0.1)


# --------------------------------------------------------------------------- value iteration
def test_value_iteration_two_state_toy_by_hand():
    env = TwoStateEnv()
    # gamma = 0.9: staying forever is worth 1 / (1 - 0.9) = 10 > 5.
    V, Q = tb.value_iteration(env, gamma=0.9)
    assert V[0] == pytest.approx(10.0)
    assert V[1] == pytest.approx(0.0)
    np.testing.assert_allclose(Q[0], [10.0, 5.0, 0.5 * 4 + 0.5 * 0.9 * 10.0], atol=1e-8)
    # gamma = 0.5: staying is worth 1 / (1 - 0.5) = 2, so ending now with 5 is optimal.
    V, Q = tb.value_iteration(env, gamma=0.5)
    assert V[0] == pytest.approx(5.0)
    np.testing.assert_allclose(Q[0], [1 + 0.5 * 5.0, 5.0, 2.0 + 0.5 * 0.5 * 5.0], atol=1e-8)
    assert tb.greedy_policy(Q)[0] == 1


def test_value_iteration_cliffwalking_optimum_is_minus_13():
    env = gym.make("CliffWalking-v1")
    V, Q = tb.value_iteration(env, gamma=1.0)
    assert V[36] == pytest.approx(-13.0)  # 13 steps along the cliff edge, -1 each
    assert V.shape == (48,) and Q.shape == (48, 4)
    returns = tb.evaluate_tabular(env, tb.greedy_policy(Q), n_episodes=3)
    np.testing.assert_array_equal(returns, [-13.0, -13.0, -13.0])


def test_value_iteration_frozenlake_success_probability():
    # Undiscounted slippery FrozenLake 4x4: the best success probability from the start is 14/17.
    V, _ = tb.value_iteration(gym.make("FrozenLake-v1", is_slippery=True), gamma=1.0, tol=1e-12)
    assert V[0] == pytest.approx(14 / 17, abs=1e-8)


def test_value_iteration_not_converging_raises():
    with pytest.raises(RuntimeError, match="did not converge in max_iter=5"):
        tb.value_iteration(TwoStateEnv(), gamma=1.0, max_iter=5)


# --------------------------------------------------------------------------- Q-learning end to end
def test_q_learning_solves_cliffwalking_and_is_reproducible():
    env = gym.make("CliffWalking-v1", max_episode_steps=200)
    Q1, returns1 = tb.q_learning(env, 500, alpha=0.5, gamma=1.0, epsilon_start=0.1, seed=0, progress=False)
    Q2, returns2 = tb.q_learning(env, 500, alpha=0.5, gamma=1.0, epsilon_start=0.1, seed=0, progress=False)
    np.testing.assert_array_equal(Q1, Q2)
    np.testing.assert_array_equal(returns1, returns2)
    assert returns1.shape == (500,)
    assert tb.evaluate_tabular(env, tb.greedy_policy(Q1), n_episodes=2).tolist() == [-13.0, -13.0]
    Q3, _ = tb.q_learning(env, 20, alpha=0.5, gamma=1.0, epsilon_start=0.1, seed=1, progress=False)
    assert not np.array_equal(Q1, Q3)


def test_q_learning_continues_from_given_table():
    env = gym.make("CliffWalking-v1", max_episode_steps=100)
    Q0 = np.zeros((48, 4))
    Q, _ = tb.q_learning(env, 3, seed=0, progress=False, Q=Q0)
    assert Q is Q0 and Q.min() < 0


def test_progress_bar_honours_tqdm_disable(monkeypatch):
    from rlhf_tutorial.utils import progress_bar

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not progress_bar(total=1).disable and progress_bar(total=1, disable=True).disable
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(total=1).disable


def test_greedy_policy_ties_to_lowest_index():
    Q = np.array([[0.0, 1.0, 1.0], [2.0, 2.0, 2.0], [-1.0, -3.0, -0.5]])
    np.testing.assert_array_equal(tb.greedy_policy(Q), [1, 0, 2])


def test_evaluate_tabular_caps_and_time_limits():
    always_up = np.zeros(48, dtype=int)  # UP from the start corner never reaches the goal
    env = gym.make("CliffWalking-v1")
    np.testing.assert_array_equal(tb.evaluate_tabular(env, always_up, n_episodes=2, max_steps=30), [-30.0, -30.0])
    limited = gym.make("CliffWalking-v1", max_episode_steps=20)
    np.testing.assert_array_equal(tb.evaluate_tabular(limited, lambda s: 0, n_episodes=1), [-20.0])


# --------------------------------------------------------------------------- bad inputs
def test_non_discrete_spaces_raise_type_error():
    with pytest.raises(TypeError, match=r"q_learning needs a Discrete env\.observation_space.*got Box"):
        tb.q_learning(gym.make("CartPole-v1"), 1, progress=False)
    with pytest.raises(TypeError, match=r"value_iteration needs a Discrete env\.action_space.*got Box"):
        tb.value_iteration(BoxActionEnv())
    with pytest.raises(TypeError, match=r"evaluate_tabular needs a Discrete env\.observation_space"):
        tb.evaluate_tabular(gym.make("CartPole-v1"), lambda s: 0)
    with pytest.raises(TypeError, match=r"needs a gymnasium\.Env, got str"):
        tb.q_learning("CliffWalking-v1", 1)


def test_value_iteration_needs_a_model():
    with pytest.raises(TypeError, match=r"env\.unwrapped\.P.*got NoneType"):
        tb.value_iteration(NoModelEnv())


@pytest.mark.parametrize("name", ["alpha", "gamma"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_update_rejects_out_of_range_alpha_gamma(name, value):
    kwargs = {"alpha": 0.5, "gamma": 0.9, name: value}
    with pytest.raises(ValueError, match=rf"{name} must be in \[0, 1\], got {value}"):
        tb.q_learning_update(np.zeros((2, 2)), 0, 0, 1.0, 1, False, **kwargs)


@pytest.mark.parametrize("name", ["alpha", "gamma", "epsilon_start", "epsilon_end", "decay_fraction"])
def test_q_learning_rejects_out_of_range_hyperparameters(name):
    env = gym.make("CliffWalking-v1", max_episode_steps=10)
    with pytest.raises(ValueError, match=rf"{name} must be in [\[(]0, 1\], got 2"):  # alpha: (0, 1]
        tb.q_learning(env, 1, progress=False, **{name: 2})


def test_epsilon_greedy_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\], got 1.2"):
        tb.epsilon_greedy([0.0, 1.0], 1.2, rng)
    with pytest.raises(TypeError, match=r"epsilon must be a number in \[0, 1\], got str"):
        tb.epsilon_greedy([0.0, 1.0], "0.1", rng)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator.*got int"):
        tb.epsilon_greedy([0.0, 1.0], 0.1, 0)
    with pytest.raises(ValueError, match=r"q_row must be a non-empty 1-D array.*got shape \(2, 2\)"):
        tb.epsilon_greedy(np.zeros((2, 2)), 0.1, rng)
    with pytest.raises(ValueError, match="q_row contains NaN"):
        tb.epsilon_greedy([0.0, np.nan], 0.1, rng)


def test_q_table_shape_and_dtype_are_checked():
    with pytest.raises(ValueError, match=r"Q must be a 2-D array of shape \(n_states, n_actions\), got shape \(4,\)"):
        tb.q_learning_update(np.zeros(4), 0, 0, 1.0, 1, False, 0.5, 0.9)
    with pytest.raises(TypeError, match="Q must have a floating-point dtype.*got int64"):
        tb.q_learning_update(np.zeros((2, 2), dtype=np.int64), 0, 0, 1.0, 1, False, 0.5, 0.9)
    with pytest.raises(TypeError, match="Q must be a NumPy array.*got list"):
        tb.q_learning_update([[0.0, 0.0]], 0, 0, 1.0, 0, False, 0.5, 0.9)
    with pytest.raises(ValueError, match="Q contains NaN or inf"):
        tb.greedy_policy(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"Q must have shape \(n_states, n_actions\) = \(48, 4\), got \(4, 48\)"):
        tb.q_learning(gym.make("CliffWalking-v1", max_episode_steps=5), 1, Q=np.zeros((4, 48)), progress=False)


def test_update_index_and_type_checks():
    Q = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"s must be in \[0, 2\], got 3"):
        tb.q_learning_update(Q, 3, 0, 1.0, 0, False, 0.5, 0.9)
    with pytest.raises(ValueError, match=r"a must be in \[0, 1\], got 2"):
        tb.q_learning_update(Q, 0, 2, 1.0, 0, False, 0.5, 0.9)
    with pytest.raises(TypeError, match=r"s_next must be an int, got float"):
        tb.q_learning_update(Q, 0, 0, 1.0, 1.0, False, 0.5, 0.9)
    with pytest.raises(TypeError, match="terminated must be a bool.*got str"):
        tb.q_learning_update(Q, 0, 0, 1.0, 1, "no", 0.5, 0.9)
    with pytest.raises(ValueError, match="r must be finite, got nan"):
        tb.q_learning_update(Q, 0, 0, float("nan"), 1, False, 0.5, 0.9)


def test_episode_counts_and_policy_checks():
    env = gym.make("CliffWalking-v1", max_episode_steps=10)
    with pytest.raises(ValueError, match="n_episodes must be >= 1, got 0"):
        tb.q_learning(env, 0, progress=False)
    with pytest.raises(ValueError, match=r"policy must be an int array of shape \(n_states,\) = \(48,\), got shape \(4,\)"):
        tb.evaluate_tabular(env, np.zeros(4, dtype=int))
    with pytest.raises(TypeError, match="policy must hold integer actions, got dtype float64"):
        tb.evaluate_tabular(env, np.zeros(48))
    with pytest.raises(ValueError, match=r"policy actions must be in \[0, 3\], got range \[0, 4\]"):
        tb.evaluate_tabular(env, np.r_[np.zeros(47, dtype=int), 4])
    with pytest.raises(ValueError, match="tol must be a positive number, got 0"):
        tb.value_iteration(env, tol=0)
