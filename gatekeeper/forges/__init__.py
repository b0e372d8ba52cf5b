"""Adapters to code forges (GitHub, GitLab) behind one small interface."""
