"""Live browser visualization for CarDreamer: a Flask-SocketIO server, its page, and the publisher.

Start a server with ``cardreamer serve --logdir runs/`` (or :func:`visualization.cli.start_server_subprocess`);
show any Gymnasium env on it with :class:`visualization.wrapper.LiveDisplay`, or publish to it
yourself with :func:`visualization.publisher.make_publisher`. The CarDreamer core never imports this package.
"""
