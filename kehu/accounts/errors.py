from kehu.core.errors import Conflict, DomainError, PermissionDeniedError, ValidationFailed


class LastAdminError(Conflict):
    code = "last_admin"


class LoginThrottled(DomainError):
    code = "login_throttled"
    status = 429


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    status = 401


class DepartmentInUse(Conflict):
    code = "department_in_use"


class RoleInUse(Conflict):
    code = "role_in_use"


class InvalidPermission(ValidationFailed):
    code = "invalid_permission"


class NotPermitted(PermissionDeniedError):
    code = "permission_denied"
