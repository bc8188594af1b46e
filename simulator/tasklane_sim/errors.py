"""The contract's error body, `{"error": {"code": ..., "message": ...}}`, for every failure."""

from __future__ import annotations

from typing import NoReturn

from starlette.responses import JSONResponse


class ApiError(Exception):
    """Raised by a handler to answer with the contract's error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.headers)

    def raise_for(self, _: object) -> NoReturn:
        """A gate handler that answers with this error (for paths the API does not have)."""
        raise self


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
