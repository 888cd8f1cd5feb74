from django.urls import path

from kehu.accounts import views as accounts
from kehu.core import views as core
from kehu.web import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("language/", views.language_switch, name="language"),
    path("users/", accounts.user_list, name="user_list"),
    path("users/new/", accounts.user_create, name="user_create"),
    path("users/<int:user_id>/", accounts.user_edit, name="user_edit"),
    path("users/<int:user_id>/password/", accounts.user_set_password, name="user_password"),
    path("users/<int:user_id>/deactivate/", accounts.user_deactivate, name="user_deactivate"),
    path("users/<int:user_id>/reactivate/", accounts.user_reactivate, name="user_reactivate"),
    path("departments/", accounts.department_list, name="department_list"),
    path("departments/new/", accounts.department_create, name="department_create"),
    path("departments/<int:department_id>/", accounts.department_edit, name="department_edit"),
    path("departments/<int:department_id>/delete/", accounts.department_delete, name="department_delete"),
    path("roles/", accounts.role_list, name="role_list"),
    path("roles/new/", accounts.role_create, name="role_create"),
    path("roles/<int:role_id>/", accounts.role_edit, name="role_edit"),
    path("roles/<int:role_id>/delete/", accounts.role_delete, name="role_delete"),
    path("tokens/", accounts.token_list, name="token_list"),
    path("tokens/new/", accounts.token_create, name="token_create"),
    path("tokens/<int:token_id>/revoke/", accounts.token_revoke, name="token_revoke"),
    path("audit/", core.audit_list, name="audit_list"),
    path("audit/verify/", core.audit_verify_view, name="audit_verify"),
]
