def fail_here(x):
    y = x + 1
    raise ValueError(f"packaged failure {y}")  # imp_sem traceback marker


class Documented:
    """A class whose source inspect.getsource must find."""

    def method(self):
        return "documented"


def nested_caller():
    return fail_here(41)
