"""Users, teams and memberships: who exists and who may act for which team."""
