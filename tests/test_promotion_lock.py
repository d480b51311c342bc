"""The promotion lock with a real sqlite store: the release of a racing holder, met at the one moment MLflow's
SQL store reads the lock back to word its "already exists", takes the lock instead of escaping as "not found"."""

from __future__ import annotations

import pytest

from sai_mlflow.promotion import lock_name, promotion_lock
from sai_mlflow.tracking.store import make_client


@pytest.fixture
def clients(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return make_client(uri), make_client(uri)


def test_a_lock_released_while_the_store_words_its_refusal_is_taken(clients):
    holder, racer = clients
    name = lock_name("det-race", "champion")
    holder.create_registered_model(name)  # another promotion holds the lock
    store = racer._get_registry_client().store
    real_get = store.get_registered_model
    released = []

    def holder_releases_first(n):
        # the store met the unique name (IntegrityError) and now reads the model back: the holder ends here
        if n == name and not released:
            released.append(n)
            holder.delete_registered_model(name)
        return real_get(n)

    store.get_registered_model = holder_releases_first  # the real store, the other process's release injected
    with promotion_lock(racer, "det-race", "champion", wait_s=5):
        assert released == [name]
        assert holder.get_registered_model(name).name == name  # the racer holds it now
    assert [m.name for m in holder.search_registered_models()] == []


def test_a_held_lock_is_waited_for_then_refused_naming_it(clients):
    from sai_mlflow.promotion import LockTimeout

    holder, racer = clients
    holder.create_registered_model(lock_name("det-wait", "champion"), tags={"sai.lock.owner": "someone"})
    with pytest.raises(LockTimeout, match="det-wait.promotion-lock.champion.*someone"):
        with promotion_lock(racer, "det-wait", "champion", wait_s=0.3):
            pass
