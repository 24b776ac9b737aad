"""``/demo/server-todo/``: a staff login alone must not write to, or create, any store."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from syncapp import storage
from syncapp.models import StoreAccess

pytestmark = [pytest.mark.security, pytest.mark.django_db(transaction=True)]


def staff_client(*permissions):
    user = User.objects.create_user("staff", password="staff-password-0123456789", is_staff=True)
    user.user_permissions.add(*(Permission.objects.get(codename=codename) for codename in permissions))
    client = Client()
    client.force_login(user)
    return user, client


def add(client, store_id):
    return client.post("/demo/server-todo/", {"store_id": store_id, "text": "from the server"})


def test_staff_without_the_permission_to_change_stores_is_refused(store_id):
    _, client = staff_client()
    assert add(client, store_id).status_code == 403
    assert not storage.store_exists(store_id)


def test_the_store_access_a_syncing_client_would_need_applies(store_id):
    user, client = staff_client("change_store")
    refused = add(client, store_id)
    assert refused.status_code == 200 and b"may not sync store" in refused.content
    StoreAccess.objects.create(user=user, pattern=store_id, access=StoreAccess.READ)
    assert b"may only read store" in add(client, store_id).content
    assert not storage.store_exists(store_id)

    StoreAccess.objects.filter(user=user).update(access=StoreAccess.WRITE)
    assert add(client, store_id).status_code == 200
    assert storage.head(store_id) == 1


def test_create_stores_false_applies(store_id, settings):
    settings.LIVESYNC = {**settings.LIVESYNC, "CREATE_STORES": False}
    user, client = staff_client("change_store")
    StoreAccess.objects.create(user=user, pattern=store_id, access=StoreAccess.WRITE)
    assert b"CREATE_STORES is False" in add(client, store_id).content
    assert not storage.store_exists(store_id)
