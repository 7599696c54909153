"""The browser pages (HTML, CSS, ES modules), installed as the package data of ``server.frontend``."""
