"""The guide's "am I running inside a package?" example."""


class UnpackageableException(Exception):
    pass


if "__torch_package__" in dir():  # true if the code is being loaded from a package
    def is_in_package():
        return True

    UserException = Exception
else:
    def is_in_package():
        return False

    UserException = UnpackageableException
