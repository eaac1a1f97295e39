class MyClass:
    def __init__(self, value=3):
        self.value = value

    def twice(self):
        return self.value * 2
