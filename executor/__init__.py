"""The executor role: per topic, elect one leader in ZooKeeper; the leader consumes
the topic, sends trades to the exchange and settles the results."""
