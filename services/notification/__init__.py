"""The notification worker: emails to tenant administrators."""
