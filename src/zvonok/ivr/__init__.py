"""IVR voice menus as data: the table, REST CRUD with validation, greetings (uploads and espeak-ng)."""
