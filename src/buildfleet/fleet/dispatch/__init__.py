"""Which board runs where: the shared pool, the dispatch policy, costs, statistics, the sink."""
