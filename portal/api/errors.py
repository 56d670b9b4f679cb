"""The API's own refusal: an HTTP status, a readable message and, for
validation, a message per field (the contract's error shape)."""


class ApiError(Exception):
    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors
