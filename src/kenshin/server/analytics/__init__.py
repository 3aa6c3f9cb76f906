"""Analytics: forecasts of 30-minute energy with a band, and anomaly checks."""
