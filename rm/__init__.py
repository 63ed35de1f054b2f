"""Reward models: data loading, Bradley-Terry training, evaluation and scoring. No Prefect here."""
