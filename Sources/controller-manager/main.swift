print("controller-manager")
