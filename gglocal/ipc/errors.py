"""IPC errors as the client knows them: each maps to an `aws.greengrass#<Name>` error shape."""

from __future__ import annotations

from typing import Any


class IpcError(Exception):
    """Raised by an operation handler; sent to the client as an APPLICATION_ERROR message."""

    shape = "ServiceError"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


class ServiceError(IpcError):
    shape = "ServiceError"


class UnauthorizedError(IpcError):
    shape = "UnauthorizedError"


class InvalidArgumentsError(IpcError):
    shape = "InvalidArgumentsError"


class ResourceNotFoundError(IpcError):
    shape = "ResourceNotFoundError"

    def __init__(self, message: str, resource_type: str | None = None, resource_name: str | None = None):
        super().__init__(message, resourceType=resource_type, resourceName=resource_name)


class ComponentNotFoundError(IpcError):
    shape = "ComponentNotFoundError"


class FailedUpdateConditionCheckError(IpcError):
    shape = "FailedUpdateConditionCheckError"


class ConflictError(IpcError):
    shape = "ConflictError"


class InvalidTokenError(IpcError):
    """ValidateAuthorizationToken with a token the nucleus did not issue (nucleus AuthorizationIPCAgent)."""

    shape = "InvalidTokenError"


class InvalidRecipeDirectoryPathError(IpcError):
    shape = "InvalidRecipeDirectoryPathError"


class InvalidArtifactsDirectoryPathError(IpcError):
    shape = "InvalidArtifactsDirectoryPathError"
