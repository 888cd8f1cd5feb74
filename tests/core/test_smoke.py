def test_me_answers_with_the_token_owner(admin_user, api_as):
    response = api_as(admin_user).get("me")
    assert response.status_code == 200
    assert response.json()["username"] == "admin"
