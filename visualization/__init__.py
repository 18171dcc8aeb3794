"""Live browser visualization for CarDreamer: a Flask-SocketIO server, its page, and the publisher.

Start a server with ``cardreamer serve --logdir runs/`` (or :func:`visualization.cli.start_server_subprocess`)
and publish to it with :func:`visualization.publisher.make_publisher`.
"""
