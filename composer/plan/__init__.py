"""Plan: what applying the fleet would change, per Composer environment."""
