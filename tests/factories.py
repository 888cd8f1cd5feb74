"""factory-boy factories for accounts data, shared by every test package."""

from __future__ import annotations

import factory

from kehu.accounts.models import Department, Role, User
from kehu.core.permissions import DataScope

TEST_PASSWORD = "correct-horse-battery-staple"


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"门店 {n}")
    path = ""

    @factory.post_generation
    def set_path(obj: Department, create: bool, extracted: object, **kwargs: object) -> None:  # noqa: N805
        obj.path = f"{obj.parent.path if obj.parent else '/'}{obj.pk}/"
        obj.depth = obj.parent.depth + 1 if obj.parent else 0
        obj.save(update_fields=["path", "depth"])


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role

    name = factory.Sequence(lambda n: f"role-{n}")
    permissions: list[str] = []
    data_scope = DataScope.OWN


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    display_name = factory.Sequence(lambda n: f"员工{n}")
    password = factory.django.Password(TEST_PASSWORD)

    @factory.post_generation
    def roles(obj: User, create: bool, extracted: list[Role] | None, **kwargs: object) -> None:  # noqa: N805
        if create and extracted:
            obj.roles.set(extracted)
