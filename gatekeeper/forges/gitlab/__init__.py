"""The GitLab adapter: `webhooks.py` (deliveries → `Event`s, delivery ids, audit entries), `client.py`
(the `Forge` port on python-gitlab), `users.py` (bots, service accounts and agents among GitLab
accounts), `forge.py` (opening a forge for a job)."""
