"""The queue runner: takes messages from the spool and delivers them (S4, Q1, Q4, Q5)."""
