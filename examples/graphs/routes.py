"""Route planning on networkx graphs; packaged together with networkx itself."""

import random

import networkx as nx


def city_graph(nodes: int, edges: int) -> nx.Graph:
    """A random road network; deterministic because the build seeds ``random``."""
    graph = nx.gnm_random_graph(nodes, edges)
    for u, v in sorted(graph.edges):
        graph.edges[u, v]["weight"] = random.randint(1, 9)
    return graph


def shortest_route(graph: nx.Graph, source, target) -> list:
    return nx.shortest_path(graph, source, target, weight="weight")


def hub(graph: nx.Graph):
    """The node with the highest degree centrality (smallest one on ties)."""
    centrality = nx.degree_centrality(graph)
    return max(sorted(centrality), key=centrality.__getitem__)
