"""Expected contents of //examples/graphs, for the tests (works with either importer)."""


def check(importer) -> None:
    karate = importer.load_pickle("graphs", "karate.pkl")
    assert type(karate).__module__.startswith("<torch_package_"), "networkx must come from the package"
    assert (karate.number_of_nodes(), karate.number_of_edges()) == (34, 78)

    routes = importer.import_module("examples.graphs.routes")
    assert routes.hub(karate) == 33
    route = routes.shortest_route(karate, 0, 33)
    assert route[0] == 0 and route[-1] == 33 and len(route) == 3

    city = importer.load_pickle("graphs", "city.pkl")
    assert (city.number_of_nodes(), city.number_of_edges()) == (30, 80)
    assert all(1 <= w <= 9 for _, _, w in city.edges(data="weight"))
