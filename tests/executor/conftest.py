import pytest

from executor.fencing import Fence, topic_leader_claim

TOPIC = "unit.trades.0"


@pytest.fixture
def fence(db):
    """This test leads TOPIC with epoch 10."""
    epoch = 10
    assert topic_leader_claim(topic=TOPIC, epoch=epoch, holder="unit-test")
    return Fence(
        topic=TOPIC, epoch=epoch, still_leader=lambda: True, holder="unit-test"
    )
