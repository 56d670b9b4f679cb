"""RQ entry points: thin functions that take ids and call services.

Workers run them inside the application context pushed by
``flask --app app worker``; the job modules never create an app.
"""
