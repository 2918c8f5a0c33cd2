"""Triggers. The triggerer imports them by classpath, so they must stay in this installed package."""
