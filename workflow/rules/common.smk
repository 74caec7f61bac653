# Helpers shared by the rule files.


def model_names():
    return list(config["models"])


def model_config(name):
    """Hyper-parameters of one model with the schema's defaults filled in."""
    return dict(config["models"][name])


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
