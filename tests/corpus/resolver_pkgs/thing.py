class Thing:
    def __init__(self, value: int) -> None:
        self.value = value
