"""Extension objects, made once and bound to the app in create_app (app.py).

Here rather than in app.py so that blueprints can import them without importing the app
factory. ``db`` lives in models/ and ``mail`` in services/mail.py, next to what uses them.
"""

from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
