"""Assignment of customers to Composer environments (composer/plan/environments.py): pure,
so it is checked on large synthetic fleets in milliseconds."""

from __future__ import annotations

from collections import Counter

import pytest

from composer.plan.environments import Environment, Member, assign, rendezvous, roots


def envs(n: int, capacity: int = 3000, start: int = 0) -> list[Environment]:
    return [Environment(f"env-{i}", f"gs://b{i}/dags", capacity) for i in range(start, start + n)]


def fleet(n: int) -> list[Member]:
    """n customers; every 10th a parent of the next three, one of those a grandparent."""
    members = []
    for i in range(n):
        offset = i % 10
        parent = f"c{i - offset}" if 1 <= offset <= 2 else f"c{i - 2}" if offset == 3 else None
        members.append(Member(f"c{i}", parent))
    return members


def test_a_parent_and_all_its_descendants_share_an_environment():
    result = assign(fleet(1000), envs(4))
    for member in fleet(1000):
        assert (
            result.environment[member.customer_id]
            == result.environment[result.root[member.customer_id]]
        )
    assert result.root["c13"] == "c10"  # grandchild -> child -> root


def test_onboarding_and_offboarding_move_nobody_else():
    before = assign(fleet(2000), envs(4)).environment
    onboarded = assign([*fleet(2000), Member("new-district")], envs(4)).environment
    offboarded = assign(fleet(2000)[:-1], envs(4)).environment
    assert {c: onboarded[c] for c in before} == before
    assert all(before[c] == env for c, env in offboarded.items())


def test_adding_an_environment_moves_about_one_in_n_plus_one_and_none_between_old_ones():
    members = fleet(10000)
    before = assign(members, envs(4)).environment
    after = assign(members, envs(5)).environment
    moved = [c for c in before if before[c] != after[c]]
    assert all(after[c] == "env-4" for c in moved)  # only to the new one
    assert 0.8 * len(members) / 5 < len(moved) < 1.2 * len(members) / 5


def test_removing_an_environment_moves_only_its_own_customers():
    members = fleet(5000)
    before = assign(members, envs(4)).environment
    after = assign(members, [e for e in envs(4) if e.name != "env-2"]).environment
    moved = {c for c in before if before[c] != after[c]}
    assert moved == {c for c, env in before.items() if env == "env-2"}


def test_equal_capacities_balance_within_ten_percent():
    counts = Counter(assign([Member(f"d{i}") for i in range(10000)], envs(4)).environment.values())
    assert max(counts.values()) / (10000 / 4) <= 1.1


def test_capacity_weights_the_share():
    weighted = [Environment("small", "gs://s/d", 1000), Environment("large", "gs://l/d", 3000)]
    counts = Counter(assign([Member(f"d{i}") for i in range(8000)], weighted).environment.values())
    assert 0.2 < counts["small"] / 8000 < 0.3


def test_a_pin_wins_and_carries_its_whole_tree():
    members = [m if m.customer_id != "c11" else Member("c11", "c10", "env-3") for m in fleet(40)]
    result = assign(members, envs(4))
    assert {result.environment[c] for c in ("c10", "c11", "c12", "c13")} == {"env-3"}


def test_the_pin_nearest_the_root_wins_a_conflict_with_a_warning():
    members = [Member("root", None, "env-1"), Member("kid", "root", "env-2")]
    result = assign(members, envs(4))
    assert result.environment == {"root": "env-1", "kid": "env-1"}
    assert result.warnings == [
        "customer kid: pinned to env-2, but its org tree (root root) is pinned to env-1 by root: "
        "it stays with its tree"
    ]


def test_a_pin_to_an_unknown_environment_is_an_error_naming_customer_and_field():
    result = assign([Member("tulsa-ps", None, "env-9")], envs(2))
    assert [str(e) for e in result.errors] == [
        "customer tulsa-ps, field environment: 'env-9' is not an environment of fleet.yaml "
        "(one of: env-0, env-1)"
    ]


@pytest.mark.parametrize("key", ["a", "district-42", "x" * 64])
def test_rendezvous_depends_on_the_key_and_the_set_of_environments_only(key):
    assert rendezvous(key, envs(4)) == rendezvous(key, list(reversed(envs(4))))


def test_a_parent_cycle_still_gives_every_member_one_root():
    found = roots({"a": "b", "b": "a", "c": "a"})
    assert found == {"a": "a", "b": "a", "c": "a"}


def test_a_draining_environment_wins_nothing_and_moves_only_its_own():
    members = fleet(3000)
    before = assign(members, envs(4)).environment
    draining = [
        Environment(e.name, e.target, 0 if e.name == "env-1" else e.capacity) for e in envs(4)
    ]
    after = assign(members, draining).environment
    assert "env-1" not in after.values()
    assert {c for c in before if before[c] != after[c]} == {
        c for c, e in before.items() if e == "env-1"
    }
